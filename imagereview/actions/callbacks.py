"""Callback intake: judge what came, keep it as bounded evidence, wake the refresh it asks for.

Anyone may post to a callback URL. The token in the URL is checked before the body is read,
and a body is decoded only within CALLBACK_MAX_BYTES and MAX_JSON_DEPTH. Refused callbacks
are kept in full only for the first few per generation, refusal, address and window; the
rest are counted. A task a callback names is a hint, never a fact: it is claimed only once
recordInfo shows it was created with the generation's callback URL.
"""

import hmac
import logging
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from imagereview.jobs import enqueue
from imagereview.models import CallbackReceipt, Generation, RefusedCallbackTally
from imagereview.providers.kie import callback_task_id, loads_bounded, verify_callback_signature
from imagereview.transitions import by_pk

log = logging.getLogger(__name__)

Outcome = CallbackReceipt.Outcome
# Receipts whose task may be followed: authentic ones, and those refused for their signature
# alone (the token in the URL was right), since a signing key can be wrong or rotated.
HINTS = (Outcome.ACCEPTED, Outcome.BAD_SIGNATURE)
ACCEPTED_EXCERPT = 100_000
REFUSED_EXCERPT = 4_000
HEADER_EXCERPT = 1_000
# The range of the receipt's integer column.
CODE_RANGE = range(-(2**31), 2**31)


class Judgement(NamedTuple):
    """What a callback comes to, with its body and task when they were read."""

    authentic: bool
    outcome: str
    payload: dict[str, Any] | None = None
    task_id: str = ""


def record_callback(
    *,
    generation_id: int,
    token: str,
    headers: dict[str, str],
    body: bytes,
    remote_addr: str | None,
) -> CallbackReceipt | None:
    """Judge a callback, keep it as evidence and, if it is authentic, wake its refresh.

    None for an unknown generation. A refused callback past the bound is counted and its
    receipt, returned for its outcome, is not saved.
    """
    generation = by_pk(Generation.objects.only("callback_token", "provider_task_id"), generation_id)
    if generation is None:
        return None
    judgement = _judge(generation, token, headers, body)
    code = judgement.payload.get("code") if judgement.payload else None
    excerpt = ACCEPTED_EXCERPT if judgement.authentic else REFUSED_EXCERPT
    # No character takes more than four bytes: decode no more than the excerpt needs.
    text = body[: excerpt * 4].decode("utf-8", errors="replace")
    receipt = CallbackReceipt(
        generation=generation,
        task_id=judgement.task_id,
        code=code if type(code) is int and code in CODE_RANGE else None,
        outcome=judgement.outcome,
        verified=judgement.authentic,
        headers={name: _storable(value, HEADER_EXCERPT) for name, value in headers.items()},
        body=_storable(text, excerpt),
        remote_addr=remote_addr,
    )
    if not receipt.verified and not _kept_in_full(receipt):
        _count_refused(receipt)
        return receipt
    # One statement, committed on its own: the evidence is kept before the refresh is woken,
    # and a process that dies in between leaves it for the dispatcher, which polls the task.
    receipt.save()
    if receipt.outcome == Outcome.ACCEPTED:
        enqueue("refresh_generation", _refreshed_by(generation, receipt.task_id))
    if receipt.outcome != Outcome.ACCEPTED:
        log.warning("callback for generation %s not followed: %s", generation_id, receipt.outcome)
    return receipt


def _refreshed_by(generation: Generation, task_id: str) -> int:
    """The generation whose refresh a callback naming this task wakes: its own, or that of
    the duplicate holding the task, since a duplicate calls back on its original's URL."""
    if task_id == generation.provider_task_id:
        return generation.pk
    duplicate = generation.duplicates.filter(provider_task_id=task_id).only("pk").first()
    return (duplicate or generation).pk


def unproven_hints() -> QuerySet[CallbackReceipt]:
    """Receipts naming a task that no generation holds and that was not disproved."""
    held = Generation.objects.filter(provider_task_id=OuterRef("task_id"))
    return (
        CallbackReceipt.objects.filter(outcome__in=HINTS).exclude(task_id="").exclude(Exists(held))
    )


def _judge(generation: Generation, token: str, headers: dict[str, str], body: bytes) -> Judgement:
    """Whether a callback is authentic, what comes of it, and its body if that was read."""
    expected = generation.callback_token.encode()
    if not hmac.compare_digest(token.encode("utf-8", "replace"), expected):
        # Unread: a stranger's body costs no parsing.
        return Judgement(False, Outcome.BAD_TOKEN)
    payload = _payload(body)
    task_id = callback_task_id(payload) if payload else ""
    if not task_id:
        return Judgement(False, Outcome.MALFORMED, payload)
    authentic = not settings.KIE_WEBHOOK_HMAC_KEY or verify_callback_signature(
        key=settings.KIE_WEBHOOK_HMAC_KEY,
        task_id=task_id,
        timestamp=headers.get("X-Webhook-Timestamp", ""),
        signature=headers.get("X-Webhook-Signature", ""),
        tolerance=settings.KIE_CALLBACK_TOLERANCE,
    )
    if task_id == generation.provider_task_id:
        # The task this generation holds: no hint to weigh, the common case made cheap.
        outcome = Outcome.ACCEPTED if authentic else Outcome.BAD_SIGNATURE
    elif CallbackReceipt.objects.filter(task_id=task_id, outcome=Outcome.UNKNOWN_TASK).exists():
        outcome = Outcome.UNKNOWN_TASK
    elif _over_unclaimed_limit(generation, task_id):
        outcome = Outcome.OVER_LIMIT
    else:
        outcome = Outcome.ACCEPTED if authentic else Outcome.BAD_SIGNATURE
    return Judgement(authentic, outcome, payload, task_id)


def _payload(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is too large, too deep or no object."""
    if len(body) > settings.CALLBACK_MAX_BYTES:
        return None
    try:
        payload = loads_bounded(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _over_unclaimed_limit(generation: Generation, task_id: str) -> bool:
    """Whether naming this task would give the generation more unclaimed tasks than allowed."""
    if Generation.objects.filter(provider_task_id=task_id).exists():
        return False
    others = (
        unproven_hints()
        .filter(generation=generation)
        .exclude(task_id=task_id)
        .values("task_id")
        .distinct()
    )
    named = generation.receipts.filter(outcome__in=HINTS, task_id=task_id).exists()
    return not named and others.count() >= settings.CALLBACK_UNCLAIMED_MAX


def _window_start(now: datetime) -> datetime:
    seconds = settings.CALLBACK_REFUSED_WINDOW
    return datetime.fromtimestamp(now.timestamp() // seconds * seconds, tz=UTC)


def _kept_in_full(receipt: CallbackReceipt) -> bool:
    """Whether a refused callback is among the first few of its window to be kept whole."""
    kept = CallbackReceipt.objects.filter(
        generation=receipt.generation,
        outcome=receipt.outcome,
        verified=False,
        received_at__gte=_window_start(timezone.now()),
    )
    if kept.count() >= settings.CALLBACK_REFUSED_KEPT_PER_GENERATION:
        return False
    return kept.filter(remote_addr=receipt.remote_addr).count() < settings.CALLBACK_REFUSED_KEPT


def _count_refused(receipt: CallbackReceipt) -> None:
    now = timezone.now()
    tally, created = RefusedCallbackTally.objects.get_or_create(
        generation=receipt.generation,
        outcome=receipt.outcome,
        window_start=_window_start(now),
        defaults={"last_at": now},
    )
    RefusedCallbackTally.objects.filter(pk=tally.pk).update(
        count=F("count") + 1, last_at=now, last_remote_addr=receipt.remote_addr
    )
    if created:
        log.warning(
            "callbacks for generation %s refused (%s) past the few kept: counting the rest",
            receipt.generation_id,
            receipt.outcome,
        )


def _storable(text: str, limit: int) -> str:
    """Text as a column can hold it: bounded, and without NUL, which PostgreSQL refuses."""
    return text[:limit].replace("\x00", "\ufffd")
