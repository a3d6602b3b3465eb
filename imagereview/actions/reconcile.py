"""The reconciler: the database, not the broker, says what work is due.

It runs every second in the dispatcher process (and every minute as a django-q2 schedule, as
a safety net): it sends queued work within the provider's limits, asks about quiet tasks,
retries stores, gives up on tasks that never finish and resubmits creates whose outcome
stayed unknown past a grace period; and it sends again webhook deliveries, publications and
withdrawals whose job was lost or whose retry is due.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from imagereview.actions.account import get_account, probe_circuit
from imagereview.actions.callbacks import unproven_hints
from imagereview.actions.publishing import send_due_publications
from imagereview.actions.requests import settle_request
from imagereview.actions.submission import send_due_submissions
from imagereview.actions.webhooks import send_due_deliveries
from imagereview.jobs import backlog, dispatch_lease, enqueue, enqueue_after_commit
from imagereview.models import CallbackReceipt, Event, Generation, ImageRequest
from imagereview.providers.kie import KieClient
from imagereview.transitions import lock, move, record_creation

log = logging.getLogger(__name__)

G = Generation.State
BATCH = 200
# The job that takes a generation on from each working state.
NEXT_JOB = {
    G.QUEUED: "submit_generation",
    G.SUBMITTING: "refresh_generation",
    G.SUBMITTED: "refresh_generation",
    G.SUCCEEDED: "store_outputs",
}


def reconcile(
    *,
    client: KieClient,
    now: datetime | None = None,
    pace: Callable[[float], None] | None = None,
) -> dict[str, int]:
    """Enqueue every generation whose next step is due; return how many of each.

    `pace`, the dispatcher's, waits until a moment: submit jobs are then sent just before
    their create slots (see `send_due_submissions`).
    """
    now = now or timezone.now()
    probe_circuit(client=client)
    account = get_account()
    submitting_open = not account.circuit_open
    due = {
        "refresh_generation": Generation.objects.filter(state=G.SUBMITTED),
        "store_outputs": Generation.objects.filter(state=G.SUCCEEDED),
    }
    # Backpressure: work leased into a backlog the workers cannot reach within the lease is
    # only sent again, so send no more than the backlog has room for.
    room = max(0, settings.DISPATCH_MAX_BACKLOG - backlog())
    counts = {}
    for job, queryset in due.items():
        size = min(BATCH, room)
        with transaction.atomic():
            # Several dispatchers may run: each takes rows the others have not locked.
            ids = list(
                queryset.filter(next_attempt_at__lte=now)
                .select_for_update(skip_locked=True)
                .order_by("next_attempt_at")
                .values_list("pk", flat=True)[:size]
            )
            # Leased: should the job be lost with its worker, it is due again after the lease.
            Generation.objects.filter(pk__in=ids).update(next_attempt_at=now + dispatch_lease())
        for generation_id in ids:
            enqueue(job, generation_id)
        counts[job] = len(ids)
        room -= len(ids)
    # After a halt, one create proves the account works before the rest follow.
    counts["submit_generation"] = (
        send_due_submissions(now=now, limit=min(1 if account.on_trial else BATCH, room), pace=pace)
        if submitting_open
        else 0
    )
    room -= counts["submit_generation"]
    counts["deliver_webhook"] = send_due_deliveries(now, limit=room)
    room -= counts["deliver_webhook"]
    counts["publish"] = send_due_publications(now, limit=room)
    counts["unclaimed_callbacks"] = _wake_unclaimed_callbacks(now)
    # A halted account may not even answer queries: no task is judged quiet meanwhile.
    counts["timed_out"] = _time_out_quiet_generations(now) if submitting_open else 0
    counts["resubmitted"] = _release_unanswered_creates(now)
    if any(counts.values()):
        log.info("reconcile: %s", {job: n for job, n in counts.items() if n})
    return counts


def _wake_unclaimed_callbacks(now: datetime) -> int:
    """Refresh generations whose callbacks name a task no generation holds yet.

    The claim of such a task (an orphan of an unanswered create) may have failed on a
    passing provider error, or its callback been refused for its signature alone; without
    this sweep its cost would go unrecorded. Each receipt is leased like any other due work.
    """
    with transaction.atomic():
        receipts = list(
            unproven_hints()
            .filter(
                received_at__lte=now - timedelta(seconds=5),
                received_at__gte=now - timedelta(seconds=settings.RECONCILE_GIVE_UP),
            )
            .filter(Q(recheck_at=None) | Q(recheck_at__lte=now))
            .select_for_update(skip_locked=True)
            .values_list("pk", "generation_id")[:BATCH]
        )
        CallbackReceipt.objects.filter(pk__in=[pk for pk, _ in receipts]).update(
            recheck_at=now + dispatch_lease()
        )
    generation_ids = sorted({generation_id for _, generation_id in receipts})
    for generation_id in generation_ids:
        enqueue("refresh_generation", generation_id)
    return len(generation_ids)


def _time_out_quiet_generations(now: datetime) -> int:
    cutoff = now - timedelta(seconds=settings.RECONCILE_GIVE_UP)
    count = 0
    for generation_id in Generation.objects.filter(
        state=G.SUBMITTED, submitted_at__lte=cutoff
    ).values_list("pk", flat=True)[:BATCH]:
        with transaction.atomic():
            generation = lock(Generation, generation_id)
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


def _release_unanswered_creates(now: datetime) -> int:
    """Resubmit generations whose create went unanswered past the grace period.

    Not while a recent callback names a task that may be the first create's: its claim is
    tried first. The first task may exist and be billed; if it ever shows up it is kept as
    a duplicate.
    """
    cutoff = now - timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE)
    hinted = unproven_hints().filter(
        generation=OuterRef("pk"),
        received_at__gte=now - timedelta(seconds=settings.RECONCILE_GIVE_UP),
    )
    count = 0
    for generation_id in (
        Generation.objects.filter(state=G.SUBMITTING, updated_at__lte=cutoff)
        .exclude(Exists(hinted))
        .values_list("pk", flat=True)[:BATCH]
    ):
        with transaction.atomic():
            generation = lock(Generation, generation_id)
            if generation.state != G.SUBMITTING or generation.provider_task_id:
                continue
            move(
                generation,
                G.QUEUED,
                source="reconciler",
                note="createTask unanswered past the grace period; resubmitting, and a "
                "duplicate task may be billed",
                next_attempt_at=now + dispatch_lease(),
            )
            enqueue_after_commit("submit_generation", generation_id)
            count += 1
    return count


def retry_generation(
    *, generation_id: int, actor: AbstractBaseUser | None = None
) -> Generation | None:
    """Try a failed or timed-out generation again as a new generation of the same variant."""
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.state not in (G.FAILED, G.TIMED_OUT):
            return None
        if generation.retries.exists():
            return None
        image_request = lock(ImageRequest, generation.request_id)
        retry = Generation.objects.create(
            request=image_request,
            variant=generation.variant,
            retry_of=generation,
            next_attempt_at=timezone.now() + dispatch_lease(),
        )
        record_creation(retry, source="admin", actor=actor)
        if image_request.status == ImageRequest.Status.FAILED:
            move(image_request, ImageRequest.Status.GENERATING, source="admin", actor=actor)
        enqueue_after_commit("submit_generation", retry.pk)
    return retry


def cancel_generation(*, generation_id: int, actor: AbstractBaseUser | None = None) -> bool:
    """Give up on a generation that is not final: fail it as cancelled and settle its request.

    A task the provider is still running may yet be billed; its late result is not applied.
    """
    with transaction.atomic():
        if not _cancel(generation_id, actor=actor):
            return False
        settle_request(Generation.objects.get(pk=generation_id).request_id)
    return True


def _cancel(generation_id: int, *, actor: AbstractBaseUser | None) -> bool:
    generation = lock(Generation, generation_id)
    if generation is None or generation.is_final:
        return False
    move(
        generation,
        G.FAILED,
        source="admin",
        actor=actor,
        note="cancelled by an admin",
        failure_code="cancelled",
        failure_message="Cancelled by an admin.",
    )
    return True


def ask_refresh(*, generation_id: int, actor: AbstractBaseUser | None = None) -> bool:
    """Ask again about a generation's next step, and note who asked in the audit log."""
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.is_final:
            return False
        Event.objects.create(
            subject="generation",
            request_id=generation.request_id,
            generation_id=generation.pk,
            from_state=generation.state,
            to_state=generation.state,
            actor=actor,
            source="admin",
            note="refresh asked",
        )
        enqueue_after_commit(NEXT_JOB.get(generation.state, "refresh_generation"), generation.pk)
    return True


def replace_generation(
    *, generation_id: int, actor: AbstractBaseUser | None = None
) -> Generation | None:
    """Retry a generation, cancelling it first if it is stuck short of a final state.

    The request is not settled in between: it goes on generating with the retry.
    """
    with transaction.atomic():
        _cancel(generation_id, actor=actor)
        return retry_generation(generation_id=generation_id, actor=actor)
