"""Idempotency keys: a retried create answers what the first attempt answered.

The key is claimed by inserting its record, in a transaction of its own, before any work is
done: of several concurrent attempts with one key exactly one inserts it and does the work;
the others wait briefly for its answer, else are told that it is in progress. The answer
(status and JSON) is kept with the key for `IDEMPOTENCY_TTL_HOURS` and replayed with the
header `Idempotent-Replayed: true`. The same key with another body is refused. The answer
is written in the same transaction as the work, so a claim without an answer means no work
was committed for it: once `IDEMPOTENCY_STALE_SECONDS` old (its process died), another
attempt may take it over.
"""

import hashlib
import json
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from imagereview.api.bodies import Body
from imagereview.api.problems import Problem, problem_response
from imagereview.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
POLL_SECONDS = 0.05


def fingerprint(*parts: object) -> str:
    """A SHA-256 of what makes two attempts the same request (canonical JSON of `parts`)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def once(request: HttpRequest, body: Body, produce: Callable[[], HttpResponse]) -> HttpResponse:
    """Answer with `produce()`, or with the first answer to this request's idempotency key
    (per caller, `request.auth`, and per body)."""
    key = request.headers.get(HEADER)
    if key is None:
        return produce()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(
            422,
            "validation",
            f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} characters.",
            errors={HEADER: [f"1 to {MAX_KEY_LENGTH} characters"]},
        )
    endpoint = f"{request.method} {request.path}"
    record = _claim(request.auth, key, endpoint, fingerprint(body.fingerprint_parts()))
    if isinstance(record, HttpResponse):
        return record
    try:
        # The answer is recorded in the transaction of the work it answers: a process that
        # dies between the two leaves neither, and a retry does the work once.
        with transaction.atomic():
            response = produce()
            if response.status_code < 500:
                _answer(record, response)
    except Problem as problem:
        # A refusal changed nothing; it is the answer to replay.
        response = problem.response()
        _answer(record, response)
    except BaseException:
        IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()
        raise
    if response.status_code >= 500:
        # Nothing was done for certain: let a retry try again.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
    return response


def _answer(record: IdempotencyRecord, response: HttpResponse) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response=json.loads(response.content or b"null")
    )


def _claim(
    user: AbstractBaseUser, key: str, endpoint: str, body: str
) -> IdempotencyRecord | HttpResponse:
    """Insert the key's record and return it; or return the first answer to replay; or
    refuse, after waiting for that answer if it is still being produced."""
    now = timezone.now()
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=now - _ttl()).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                user=user, key=key, endpoint=endpoint, fingerprint=body
            )
    except IntegrityError:
        pass
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT_SECONDS
    while True:
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if record is None:
            # Expired or released by a failed first attempt since: claim it afresh.
            return _claim(user, key, endpoint, body)
        if record.endpoint != endpoint or record.fingerprint != body:
            raise Problem(
                422,
                "idempotency-key-reused",
                f"This {HEADER} was used for a different request in the last "
                f"{settings.IDEMPOTENCY_TTL_HOURS} hours; use a new key for a new request.",
            )
        if record.status_code is not None:
            return _replay(record)
        if _take_over(record):
            return record
        if time.monotonic() > deadline:
            raise Problem(
                409,
                "idempotency-in-progress",
                f"A request with this {HEADER} is still being processed; retry shortly.",
                headers={"Retry-After": "1"},
            )
        time.sleep(POLL_SECONDS)


def _take_over(record: IdempotencyRecord) -> bool:
    """Take an unanswered claim left behind long ago, unless another attempt just did."""
    stale = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
    if record.created_at >= stale:
        return False
    renewed = IdempotencyRecord.objects.filter(
        pk=record.pk, status_code__isnull=True, created_at=record.created_at
    ).update(created_at=timezone.now())
    return renewed == 1


def _ttl() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)


def _replay(record: IdempotencyRecord) -> HttpResponse:
    """The first answer to a key, sent again as it was."""
    headers = {"Idempotent-Replayed": "true"}
    if record.status_code >= 400 and isinstance(record.response, dict):
        return problem_response(record.response, headers=headers)
    response = HttpResponse(
        json.dumps(record.response), status=record.status_code, content_type="application/json"
    )
    for name, value in headers.items():
        response[name] = value
    return response
