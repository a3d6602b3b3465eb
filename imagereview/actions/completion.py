"""Completion: callbacks wake a refresh; the refresh asks recordInfo and applies its answer.

A callback body is never trusted for results. A task we did not know of (an early callback,
or a create whose answer was lost) is claimed only once recordInfo shows it was created with
this generation's callback URL; a task recordInfo will not report on is not asked about again.
"""

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Min
from django.utils import timezone

from imagereview import limits
from imagereview.actions.account import halt_on
from imagereview.actions.callbacks import HINTS, unproven_hints
from imagereview.actions.requests import settle_request
from imagereview.jobs import dispatch_lease, enqueue
from imagereview.limits import backoff
from imagereview.models import CallbackReceipt, Generation
from imagereview.providers.errors import Action, ProviderError
from imagereview.providers.kie import (
    PENDING_STATES,
    KieClient,
    TaskRecord,
    loads_bounded,
    parse_task,
)
from imagereview.transitions import by_pk, lock, move, record_creation

log = logging.getLogger(__name__)

G = Generation.State


def refresh_generation(*, generation_id: int, client: KieClient) -> bool:
    """Claim tasks that called back unannounced, then apply the state of our own task.

    True when the task has just succeeded: its outputs are the caller's to store next.
    """
    fields = Generation.objects.only("state", "provider_task_id")
    generation = by_pk(fields, generation_id)
    if generation is None:
        return False
    unclaimed = _unclaimed_tasks(generation)
    for task_id in unclaimed:
        claim_task(generation_id, task_id, client=client)
    if unclaimed:
        generation = by_pk(fields, generation_id)
    if generation.state not in (G.SUBMITTED, G.TIMED_OUT) or not generation.provider_task_id:
        return False
    record = _query(generation_id, generation.provider_task_id, client=client)
    if record is None:
        return False
    return apply_task_record(generation_id=generation_id, record=record)


def _unclaimed_tasks(generation: Generation) -> list[str]:
    """Task ids that callbacks with the right token named and no generation holds yet.

    The first CALLBACK_UNCLAIMED_MAX by their first receipt: however many names arrive,
    a refresh asks about no more than these.
    """
    first_named = (
        unproven_hints()
        .filter(generation=generation)
        .values("task_id")
        .annotate(first=Min("id"))
        .order_by("first")
    )
    return [row["task_id"] for row in first_named[: settings.CALLBACK_UNCLAIMED_MAX]]


def _query(generation_id: int, task_id: str, *, client: KieClient) -> TaskRecord | None:
    """Ask recordInfo within the shared query limit; None when it must wait or failed."""
    slot = limits.acquire(limits.query_limit(), max_wait=settings.KIE_SLOT_MAX_WAIT)
    if not slot.granted:
        Generation.objects.filter(pk=generation_id).update(
            next_attempt_at=timezone.now() + timedelta(seconds=slot.wait)
        )
        return None
    Generation.objects.filter(pk=generation_id).update(queries=F("queries") + 1)
    try:
        return client.record_info(task_id)
    except ProviderError as error:
        _record_refresh_failure(generation_id, task_id, error)
        return None


def claim_task(generation_id: int, task_id: str, *, client: KieClient, ours: bool = False) -> None:
    """Attach a task to a generation waiting on an unanswered create, or keep it as a duplicate.

    `ours` says the create's own answer named this task; otherwise recordInfo must show it
    was created with this generation's callback URL. A claim whose query fails is tried again
    by the reconciler, which sweeps callbacks naming tasks no generation holds.
    """
    record = None
    if not ours:
        record = _query(generation_id, task_id, client=client)
        if record is None:
            return
        generation = Generation.objects.get(pk=generation_id)
        if record.callback_url != generation.callback_url():
            log.warning("task %s does not belong to generation %s", task_id, generation_id)
            CallbackReceipt.objects.filter(
                generation_id=generation_id, task_id=task_id, outcome__in=HINTS
            ).update(outcome=CallbackReceipt.Outcome.FOREIGN)
            return
    now = timezone.now()
    try:
        with transaction.atomic():
            generation = lock(Generation, generation_id)
            if Generation.objects.filter(provider_task_id=task_id).exists():
                return
            waiting = generation.state in (G.SUBMITTING, G.QUEUED)
            if waiting and not generation.provider_task_id:
                move(
                    generation,
                    G.SUBMITTED,
                    source="cluster",
                    note=f"task {task_id} claimed after its create went unanswered",
                    provider_task_id=task_id,
                    submitted_at=now,
                    next_attempt_at=now,
                )
                target = generation.pk
            else:
                duplicate = Generation.objects.create(
                    request_id=generation.request_id,
                    variant=generation.variant,
                    duplicate_of=generation,
                    provider_task_id=task_id,
                    state=G.SUBMITTED,
                    submitted_at=now,
                    next_attempt_at=now,
                )
                record_creation(duplicate, source="cluster")
                log.warning(
                    "task %s is a duplicate of generation %s's; kept as generation %s",
                    task_id,
                    generation_id,
                    duplicate.pk,
                )
                target = duplicate.pk
    except IntegrityError:
        return  # claimed concurrently
    if record is not None and apply_task_record(generation_id=target, record=record):
        enqueue("store_outputs", target)


def _record_refresh_failure(generation_id: int, task_id: str, error: ProviderError) -> None:
    """Act on a failed recordInfo by the codes table: halt, fail the task, or ask again later."""
    log.warning("recordInfo for %s (generation %s) failed: %s", task_id, generation_id, error)
    halt_on(error)
    unheld = not Generation.objects.filter(provider_task_id=task_id).exists()
    if error.action == Action.FAIL and unheld:
        # A name a callback made up or mistook (404, or another answer final for the call):
        # not asked about again.
        CallbackReceipt.objects.filter(task_id=task_id, outcome__in=HINTS).update(
            outcome=CallbackReceipt.Outcome.UNKNOWN_TASK
        )
        return
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.provider_task_id != task_id:
            return
        if error.action == Action.FAIL and generation.state == G.SUBMITTED:
            message = (
                "The provider does not know this task."
                if error.code == 404
                else f"The provider refused to report on this task: {error.message}"
            )
            move(
                generation,
                G.FAILED,
                source="cluster",
                note=str(error),
                failure_code=str(error.code),
                failure_message=message[:2000],
            )
            settle_request(generation.request_id)
            return
        generation.query_failures += 1
        generation.next_attempt_at = timezone.now() + backoff(
            generation.query_failures + 1, retry_after=error.retry_after
        )
        generation.save(update_fields=["query_failures", "next_attempt_at", "updated_at"])


def poll_delay(generation: Generation, now: datetime) -> timedelta:
    """When to ask again about a running task, after the provider's own advice."""
    age = (now - (generation.submitted_at or now)).total_seconds()
    if age < 30:
        return timedelta(seconds=3)
    if age < 120:
        return timedelta(seconds=8)
    return timedelta(seconds=20)


def apply_task_record(*, generation_id: int, record: TaskRecord) -> bool:
    """Apply what recordInfo says about a generation's task.

    True when it moved the generation to succeeded: its outputs wait to be stored. Should
    they not be, the dispatcher sends a store job once the lease set here runs out.
    """
    now = timezone.now()
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.provider_task_id != record.task_id:
            return False
        if generation.state not in (G.SUBMITTED, G.TIMED_OUT):
            return False
        if record.state in PENDING_STATES or not record.is_final:
            generation.provider_state = record.state[:16]
            generation.query_failures = 0
            generation.next_attempt_at = now + poll_delay(generation, now)
            generation.save(
                update_fields=["provider_state", "query_failures", "next_attempt_at", "updated_at"]
            )
            return False
        credits = record.credits if record.credits is not None else _callback_credits(generation)
        if record.state == "success" and record.result_urls:
            estimated = credits is None
            if estimated:
                price = settings.KIE_PRICES[generation.request.resolution]
                credits = Decimal(price) * len(record.result_urls)
            move(
                generation,
                G.SUCCEEDED,
                source="cluster",
                provider_state=record.state,
                result_urls=record.result_urls,
                credits=credits,
                credits_estimated=estimated,
                query_failures=0,
                completed_at=now,
                next_attempt_at=now + dispatch_lease(),
            )
            return True
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
            query_failures=0,
            completed_at=now,
        )
        settle_request(generation.request_id)
    return False


def _callback_credits(generation: Generation) -> Decimal | None:
    """The credits an authentic callback reported, when recordInfo leaves them out."""
    receipts = CallbackReceipt.objects.filter(
        verified=True, task_id=generation.provider_task_id
    ).values_list("body", flat=True)
    for body in receipts:
        try:
            payload = loads_bounded(body)
        except ValueError:
            continue
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            continue
        credits = parse_task(data).credits
        if credits is not None:
            return credits
    return None
