"""The use cases. Views, commands and tasks call these; writes happen only here.

Provider calls happen outside transactions; every write re-reads and locks its row first, so
each action can run twice (or concurrently) and the second run does nothing.
"""

import hmac
import json
import logging
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from imagereview import media
from imagereview.jobs import enqueue, enqueue_after_commit
from imagereview.models import Asset, CallbackReceipt, Decision, Generation, ImageRequest
from imagereview.providers import downloads
from imagereview.providers.errors import Action, ProviderError
from imagereview.providers.kie import (
    PENDING_STATES,
    KieClient,
    TaskRecord,
    callback_task_id,
    parse_task,
    verify_callback_signature,
)
from imagereview.transitions import move, record_creation

log = logging.getLogger(__name__)

G = Generation.State
R = ImageRequest.Status

MAX_SUBMIT_ATTEMPTS = 8
HALT_PAUSE = timedelta(minutes=5)


def _now() -> datetime:
    return timezone.now()


def _lock_generation(generation_id: int) -> Generation | None:
    return Generation.objects.select_for_update().filter(pk=generation_id).first()


def backoff(attempt: int, *, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""
    ceiling = min(300.0, 2.0 * 2 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return timedelta(seconds=max(delay, retry_after or 0.0))


def poll_delay(generation: Generation, now: datetime) -> timedelta:
    """When to ask again about a task still running, following the provider's advice."""
    age = (now - (generation.submitted_at or now)).total_seconds()
    if age < 30:
        return timedelta(seconds=3)
    if age < 120:
        return timedelta(seconds=10)
    return timedelta(seconds=30)


def callback_url(generation: Generation) -> str:
    path = reverse("provider_callback", args=[generation.pk, generation.callback_token])
    return f"{settings.PUBLIC_BASE_URL}{path}"


# Intake


def create_request(
    *,
    requester: AbstractBaseUser,
    prompt: str,
    aspect_ratio: str,
    resolution: str,
    output_format: str,
    variants: int,
    mode: str = ImageRequest.Mode.GENERATE,
    parent: ImageRequest | None = None,
) -> ImageRequest:
    """Record a request with one generation per variant and queue their submission."""
    now = _now()
    with transaction.atomic():
        image_request = ImageRequest.objects.create(
            mode=mode,
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            output_format=output_format,
            variants=variants,
            requester=requester,
            parent=parent,
            revision=parent.revision + 1 if parent else 1,
        )
        record_creation(image_request, source="intake", actor=requester)
        for variant in range(1, variants + 1):
            generation = Generation.objects.create(
                request=image_request, variant=variant, next_attempt_at=now
            )
            enqueue_after_commit("submit_generation", generation.pk)
    log.info("request %s created by %s with %s variants", image_request.pk, requester, variants)
    return image_request


# Submission


def submit_generation(*, generation_id: int, client: KieClient) -> None:
    """Create the provider task for a queued generation and store its taskId at once."""
    now = _now()
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation is None or generation.state != G.QUEUED:
            return
        if generation.next_attempt_at and generation.next_attempt_at > now:
            return
        move(generation, G.SUBMITTING, source="cluster", attempts=generation.attempts + 1)
    image_request = generation.request
    try:
        task_id = client.create_task(
            prompt=image_request.prompt,
            aspect_ratio=image_request.aspect_ratio,
            resolution=image_request.resolution,
            output_format=image_request.output_format,
            callback_url=callback_url(generation) if settings.KIE_CALLBACKS else "",
        )
    except ProviderError as error:
        _record_submit_failure(generation_id, error)
        return
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation.provider_task_id == task_id:
            return
        if generation.state != G.SUBMITTING or generation.provider_task_id:
            log.warning(
                "generation %s is %s with task %s; task %s from a late create is left unattached",
                generation_id,
                generation.state,
                generation.provider_task_id,
                task_id,
            )
            return
        move(
            generation,
            G.SUBMITTED,
            source="cluster",
            note=f"task {task_id}",
            provider_task_id=task_id,
            provider_state="waiting",
            submitted_at=_now(),
            next_attempt_at=_now() + timedelta(seconds=settings.RECONCILE_FIRST_POLL),
            failure_code="",
            failure_message="",
        )
    log.info("generation %s submitted as task %s", generation_id, task_id)


def _record_submit_failure(generation_id: int, error: ProviderError) -> None:
    log.warning("createTask for generation %s failed: %s (%s)", generation_id, error, error.action)
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation is None or generation.state != G.SUBMITTING:
            return
        failure = {"failure_code": str(error.code), "failure_message": error.message[:2000]}
        if error.ambiguous:
            # The task may exist and be billed: wait for its callback or the reconciler.
            for name, value in failure.items():
                setattr(generation, name, value)
            generation.save(update_fields=[*failure, "updated_at"])
            return
        if error.action == Action.FAIL or (
            error.action == Action.RETRY and generation.attempts >= MAX_SUBMIT_ATTEMPTS
        ):
            move(generation, G.FAILED, source="cluster", note=str(error), **failure)
            settle_request(generation.request_id)
            return
        pause = HALT_PAUSE if error.action == Action.HALT else None
        delay = pause or backoff(generation.attempts, retry_after=error.retry_after)
        move(
            generation,
            G.QUEUED,
            source="cluster",
            note=f"{error.action}: {error}",
            next_attempt_at=_now() + delay,
            **failure,
        )


# Completion


def record_callback(
    *,
    generation_id: int,
    token: str,
    headers: dict[str, str],
    body: bytes,
    remote_addr: str | None,
) -> CallbackReceipt | None:
    """Keep a callback as evidence and, if it is authentic, wake the generation's refresh.

    The body is never trusted for results: the refresh asks recordInfo.
    """
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None:
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        payload = None
    task_id = callback_task_id(payload) if isinstance(payload, dict) else ""
    code = payload.get("code") if isinstance(payload, dict) else None
    Outcome = CallbackReceipt.Outcome
    if not hmac.compare_digest(token.encode(), generation.callback_token.encode()):
        outcome = Outcome.BAD_TOKEN
    elif not task_id:
        outcome = Outcome.MALFORMED
    elif settings.KIE_WEBHOOK_HMAC_KEY and not verify_callback_signature(
        key=settings.KIE_WEBHOOK_HMAC_KEY,
        task_id=task_id,
        timestamp=headers.get("X-Webhook-Timestamp", ""),
        signature=headers.get("X-Webhook-Signature", ""),
        tolerance=settings.KIE_CALLBACK_TOLERANCE,
    ):
        outcome = Outcome.BAD_SIGNATURE
    else:
        outcome = Outcome.ACCEPTED
    with transaction.atomic():
        receipt = CallbackReceipt.objects.create(
            generation=generation,
            task_id=task_id[:128],
            code=code if isinstance(code, int) else None,
            outcome=outcome,
            verified=outcome == Outcome.ACCEPTED,
            headers=headers,
            body=text[:100_000],
            remote_addr=remote_addr,
        )
        if receipt.verified:
            enqueue_after_commit("refresh_generation", generation.pk)
    if not receipt.verified:
        log.warning("callback for generation %s refused: %s", generation_id, outcome)
    return receipt


def refresh_generation(*, generation_id: int, client: KieClient) -> None:
    """Ask the provider for the authoritative state of a generation's task and apply it."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or generation.state not in (G.SUBMITTING, G.SUBMITTED, G.TIMED_OUT):
        return
    task_id = generation.provider_task_id or _task_id_from_callbacks(generation)
    if not task_id:
        return
    try:
        record = client.record_info(task_id)
    except ProviderError as error:
        _record_refresh_failure(generation_id, task_id, error)
        return
    if generation.provider_task_id is None:
        _attach_task(generation_id, record)
    apply_task_record(generation_id=generation_id, record=record)


def _task_id_from_callbacks(generation: Generation) -> str:
    receipt = generation.receipts.filter(verified=True).exclude(task_id="").first()
    return receipt.task_id if receipt else ""


def _attach_task(generation_id: int, record: TaskRecord) -> None:
    """Adopt a task whose create reply we never got, once recordInfo proves it is ours."""
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation.provider_task_id or generation.state != G.SUBMITTING:
            return
        if record.callback_url != callback_url(generation):
            log.warning("task %s does not belong to generation %s", record.task_id, generation_id)
            return
        move(
            generation,
            G.SUBMITTED,
            source="callback",
            note=f"task {record.task_id} attached from its callback",
            provider_task_id=record.task_id,
            submitted_at=_now(),
        )


def _record_refresh_failure(generation_id: int, task_id: str, error: ProviderError) -> None:
    log.warning("recordInfo for %s (generation %s) failed: %s", task_id, generation_id, error)
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation is None or generation.provider_task_id != task_id:
            return
        if error.code == 404 and generation.state == G.SUBMITTED:
            move(
                generation,
                G.FAILED,
                source="cluster",
                note=str(error),
                failure_code="404",
                failure_message="The provider does not know this task.",
            )
            settle_request(generation.request_id)
            return
        generation.next_attempt_at = _now() + backoff(
            generation.attempts + 2, retry_after=error.retry_after
        )
        generation.save(update_fields=["next_attempt_at", "updated_at"])


def apply_task_record(*, generation_id: int, record: TaskRecord) -> None:
    """Apply what recordInfo says about a generation's task."""
    now = _now()
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation is None or generation.provider_task_id != record.task_id:
            return
        if generation.state not in (G.SUBMITTED, G.TIMED_OUT):
            return
        if record.state in PENDING_STATES or not record.is_final:
            generation.provider_state = record.state[:16]
            generation.next_attempt_at = now + poll_delay(generation, now)
            generation.save(update_fields=["provider_state", "next_attempt_at", "updated_at"])
            return
        credits = record.credits if record.credits is not None else _callback_credits(generation)
        if record.state == "success" and record.result_urls:
            move(
                generation,
                G.SUCCEEDED,
                source="cluster",
                provider_state=record.state,
                result_urls=record.result_urls,
                credits=credits,
                completed_at=now,
            )
            enqueue_after_commit("store_outputs", generation.pk)
            return
        message = record.fail_message or "The provider reported success without result URLs."
        move(
            generation,
            G.FAILED,
            source="cluster",
            note=message,
            provider_state=record.state,
            failure_code=record.fail_code or "501",
            failure_message=message[:2000],
            credits=credits if credits is not None else Decimal(0),
            completed_at=now,
        )
        settle_request(generation.request_id)


def _callback_credits(generation: Generation) -> Decimal | None:
    """The credits a verified callback reported, for providers whose recordInfo omits them."""
    for receipt in generation.receipts.filter(verified=True):
        try:
            data = json.loads(receipt.body).get("data") or {}
        except (json.JSONDecodeError, AttributeError):
            continue
        credits = parse_task(data).credits
        if credits is not None:
            return credits
    return None


# Storage


@dataclass(frozen=True)
class DownloadPolicy:
    allowed_hosts: list[str]
    allow_loopback: bool
    max_bytes: int
    timeout: float

    @classmethod
    def from_settings(cls) -> "DownloadPolicy":
        return cls(
            allowed_hosts=settings.RESULT_ALLOWED_HOSTS,
            allow_loopback=settings.USE_SANDBOX,
            max_bytes=settings.RESULT_MAX_BYTES,
            timeout=settings.RESULT_TIMEOUT,
        )


def store_outputs(*, generation_id: int, client: KieClient) -> None:
    """Copy every result of a succeeded generation into our storage, then mark it stored."""
    generation = Generation.objects.select_related("request").filter(pk=generation_id).first()
    if generation is None or generation.state != G.SUCCEEDED:
        return
    stored = set(generation.outputs.values_list("index", flat=True))
    policy = DownloadPolicy.from_settings()
    for index, url in enumerate(generation.result_urls):
        if index in stored:
            continue
        try:
            _store_output(generation, index, url, client=client, policy=policy)
        except (media.BadImage, downloads.UnsafeURL, downloads.DownloadFailed) as error:
            _record_store_failure(generation_id, index, error)
            return
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation.state != G.SUCCEEDED:
            return
        if generation.outputs.count() < len(generation.result_urls):
            return
        move(generation, G.STORED, source="cluster", stored_at=_now())
        settle_request(generation.request_id)
    log.info("generation %s stored %s outputs", generation_id, len(generation.result_urls))


def _download(url: str, sink: IO[bytes], *, client: KieClient, policy: DownloadPolicy) -> None:
    """Fetch a result, asking the provider once for a fresh link if this one is dead."""
    options = {
        "allowed_hosts": policy.allowed_hosts,
        "allow_loopback": policy.allow_loopback,
        "max_bytes": policy.max_bytes,
        "timeout": policy.timeout,
    }
    try:
        downloads.fetch_to(url, sink, **options)
    except downloads.DownloadFailed as error:
        if not error.gone:
            raise
        try:
            fresh = client.fresh_download_url(url)
        except ProviderError as provider_error:
            raise downloads.DownloadFailed(
                f"{error}; no fresh link: {provider_error}", status=error.status
            ) from provider_error
        sink.seek(0)
        sink.truncate()
        downloads.fetch_to(fresh, sink, **options)


def _store_output(
    generation: Generation, index: int, url: str, *, client: KieClient, policy: DownloadPolicy
) -> None:
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as sink:
        _download(url, sink, client=client, policy=policy)
        facts = media.inspect_image(sink, allowed_formats=("PNG", "JPEG", "WEBP"))
        thumbnail = media.make_thumbnail(sink, size=settings.THUMBNAIL_SIZE)
        asset = Asset(
            kind=Asset.Kind.OUTPUT,
            request_id=generation.request_id,
            generation=generation,
            index=index,
            sha256=facts.sha256,
            bytes=facts.bytes,
            width=facts.width,
            height=facts.height,
            content_type=facts.content_type,
            source_url=url[:2000],
        )
        asset.file.save(f"output.{facts.extension}", File(sink), save=False)
    asset.thumbnail.save("thumbnail.jpg", ContentFile(thumbnail), save=False)
    try:
        with transaction.atomic():
            asset.save()
    except IntegrityError:
        # Another run stored this output first; keep its files, drop ours if distinct.
        existing = Asset.objects.filter(generation=generation, index=index).first()
        for field in ("file", "thumbnail"):
            name = getattr(asset, field).name
            if not existing or getattr(existing, field).name != name:
                getattr(asset, field).storage.delete(name)


def _record_store_failure(generation_id: int, index: int, error: Exception) -> None:
    log.warning("storing output %s of generation %s failed: %s", index, generation_id, error)
    permanent = isinstance(error, media.BadImage | downloads.UnsafeURL) or (
        isinstance(error, downloads.DownloadFailed) and error.gone
    )
    with transaction.atomic():
        generation = _lock_generation(generation_id)
        if generation is None or generation.state != G.SUCCEEDED:
            return
        if permanent:
            move(
                generation,
                G.FAILED,
                source="cluster",
                note=str(error),
                failure_code="store",
                failure_message=f"Result {index + 1} could not be stored: {error}"[:2000],
            )
            settle_request(generation.request_id)
        else:
            generation.failure_message = f"Storing result {index + 1} will be retried: {error}"
            generation.save(update_fields=["failure_message", "updated_at"])


# Requests and review


def settle_request(request_id: int) -> None:
    """Send a request to review (or fail it) once every generation is final.

    Call inside the transaction that made a generation final.
    """
    image_request = ImageRequest.objects.select_for_update().get(pk=request_id)
    if image_request.status != R.GENERATING:
        return
    states = list(image_request.generations.values_list("state", flat=True))
    if any(state not in Generation.FINAL_STATES for state in states):
        return
    if G.STORED in states:
        move(image_request, R.IN_REVIEW, source="cluster")
    else:
        move(image_request, R.FAILED, source="cluster", note="no generation succeeded")


class DecisionRefused(Exception):
    """A decision that the rules do not allow; the message is for the reviewer."""


def decide(
    *,
    output: Asset,
    reviewer: AbstractBaseUser,
    verdict: str,
    reason: str = "",
    comment: str = "",
) -> Decision:
    """Record a reviewer's verdict on one output and settle the request when all are decided."""
    if output.kind != Asset.Kind.OUTPUT:
        raise DecisionRefused("Only outputs can be reviewed.")
    if verdict == Decision.Verdict.REJECT and not reason:
        raise DecisionRefused("A reject needs a reason.")
    with transaction.atomic():
        image_request = ImageRequest.objects.select_for_update().get(pk=output.request_id)
        if image_request.status != R.IN_REVIEW:
            raise DecisionRefused("This request is not awaiting review.")
        decision = Decision.objects.create(
            output=output, reviewer=reviewer, verdict=verdict, reason=reason, comment=comment
        )
        _settle_review(image_request, reviewer)
    log.info("%s %s output %s", reviewer, verdict, output.pk)
    return decision


def latest_verdicts(image_request: ImageRequest) -> dict[int, str]:
    """The latest verdict on each output of a request that has one."""
    verdicts: dict[int, str] = {}
    for output_id, verdict in (
        Decision.objects.filter(output__request=image_request)
        .order_by("created_at", "id")
        .values_list("output_id", "verdict")
    ):
        verdicts[output_id] = verdict
    return verdicts


def _settle_review(image_request: ImageRequest, reviewer: AbstractBaseUser) -> None:
    outputs = list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).values_list("pk", flat=True))
    verdicts = latest_verdicts(image_request)
    approvals = sum(1 for verdict in verdicts.values() if verdict == Decision.Verdict.APPROVE)
    if approvals >= image_request.required_approvals and all(pk in verdicts for pk in outputs):
        move(image_request, R.APPROVED, source="review", actor=reviewer)
    elif all(pk in verdicts for pk in outputs):
        to = R.CHANGES_REQUESTED if Decision.Verdict.CHANGES in verdicts.values() else R.REJECTED
        move(image_request, to, source="review", actor=reviewer)


# The reconciler


def reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue every generation whose state has not advanced in time.

    The broker is not the source of truth: a job lost with its worker, a callback that never
    came, or a store that died half-way all end here.
    """
    now = now or _now()
    counts: dict[str, int] = {}
    settled_for = now - timedelta(seconds=5)
    due: dict[str, Any] = {
        "submit_generation": Generation.objects.filter(
            state=G.QUEUED, next_attempt_at__lte=now, updated_at__lte=settled_for
        ),
        "refresh_generation": Generation.objects.filter(
            state=G.SUBMITTED, next_attempt_at__lte=now
        ),
        "store_outputs": Generation.objects.filter(
            state=G.SUCCEEDED, updated_at__lte=now - timedelta(seconds=30)
        ),
    }
    for job, queryset in due.items():
        ids = list(queryset.values_list("pk", flat=True)[:500])
        for generation_id in ids:
            enqueue(job, generation_id)
        counts[job] = len(ids)
    counts["timed_out"] = _time_out_quiet_generations(now)
    counts["resubmitted"] = _release_stuck_submissions(now)
    if any(counts.values()):
        log.info("reconcile: %s", counts)
    return counts


def _time_out_quiet_generations(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.RECONCILE_GIVE_UP)
    count = 0
    for generation_id in Generation.objects.filter(
        state=G.SUBMITTED, submitted_at__lte=cutoff
    ).values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            generation = _lock_generation(generation_id)
            if generation.state != G.SUBMITTED:
                continue
            move(
                generation,
                G.TIMED_OUT,
                source="reconciler",
                failure_code="timeout",
                failure_message="The provider did not finish this task in time.",
            )
            settle_request(generation.request_id)
            count += 1
    return count


def _release_stuck_submissions(now: datetime) -> int:
    """Resubmit generations whose createTask outcome stayed unknown past the grace period."""
    cutoff = now - timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE)
    count = 0
    for generation_id in Generation.objects.filter(
        state=G.SUBMITTING, updated_at__lte=cutoff
    ).values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            generation = _lock_generation(generation_id)
            if generation.state != G.SUBMITTING or generation.provider_task_id:
                continue
            move(
                generation,
                G.QUEUED,
                source="reconciler",
                note="createTask outcome unknown past the grace period; resubmitting",
                next_attempt_at=now,
            )
            enqueue_after_commit("submit_generation", generation_id)
            count += 1
    return count
