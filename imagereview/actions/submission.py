"""Submission: create the provider task for a queued generation, within limits and credits."""

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imagereview import limits
from imagereview.actions.account import end_trial, ensure_credits, halt_on
from imagereview.actions.completion import claim_task
from imagereview.actions.requests import settle_request
from imagereview.jobs import dispatch_lease, enqueue
from imagereview.limits import backoff
from imagereview.models import Asset, Generation, ImageRequest
from imagereview.providers.errors import Action, ProviderError
from imagereview.providers.kie import KieClient
from imagereview.transitions import by_pk, lock, move

log = logging.getLogger(__name__)

G = Generation.State

MAX_SUBMIT_ATTEMPTS = 8
# Uploaded references are deleted by the provider after 3 days; stop using a link early.
REFERENCE_TTL = timedelta(days=3)
REFERENCE_MARGIN = timedelta(hours=2)

# How long before its slot's moment the dispatcher sends a submit job: time for the broker's
# hop (the ORM broker polls every 0.2 s), so the job starts before its moment, not after.
SUBMIT_LEAD = 0.25


def send_due_submissions(
    *, now: datetime, limit: int, pace: Callable[[float], None] | None = None
) -> int:
    """Hand each due queued generation, oldest first, its create slot, and send its job.

    Slots are reserved here, in the shared limiter, up to one dispatcher period ahead: each
    job sends its create at its own moment instead of waking to find the window full, so
    one job makes one create. With `pace` (the dispatcher's clock), each job is sent just
    before its moment; without it, at once, and it waits for its moment itself.
    Return how many were sent.
    """
    with transaction.atomic():
        # Several dispatchers may run: each takes rows the others have not locked.
        ids = list(
            Generation.objects.filter(state=G.QUEUED, next_attempt_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[: max(0, limit)]
        )
        moments, _ = limits.reserve_many(
            limits.submit_limit(), count=len(ids), max_wait=settings.DISPATCH_INTERVAL
        )
        ids = ids[: len(moments)]
        # Leased: should the job be lost with its worker, it is due again after the lease.
        Generation.objects.filter(pk__in=ids).update(next_attempt_at=now + dispatch_lease())
    for generation_id, moment in zip(ids, moments, strict=True):
        if pace:
            pace(moment - SUBMIT_LEAD)
        enqueue("submit_generation", generation_id, moment)
    return len(ids)


def submit_generation(
    *, generation_id: int, client: KieClient, slot_at: float | None = None
) -> None:
    """Create the provider task for a queued generation and store its taskId at once.

    `slot_at` is the create slot the dispatcher reserved for it; without one (a job sent
    by hand or by an older dispatcher) the job takes the first free slot itself.
    """
    generation = by_pk(Generation.objects.select_related("request"), generation_id)
    if generation is None or generation.state != G.QUEUED:
        return
    image_request = generation.request
    waiting = ensure_credits(client=client, price=settings.KIE_PRICES[image_request.resolution])
    if waiting:
        _defer(generation_id, reason=waiting, delay=timedelta(seconds=5))
        return
    try:
        # Before the slot is taken: the create must follow its slot at once.
        image_urls = (
            host_references(image_request, client=client)
            if image_request.mode == ImageRequest.Mode.EDIT
            else []
        )
    except ProviderError as error:
        _record_upload_failure(generation_id, error)
        return
    slot = _take_slot(slot_at)
    if not slot.granted:
        _defer(generation_id, reason="", delay=timedelta(seconds=slot.wait))
        return
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.state != G.QUEUED:
            return
        move(generation, G.SUBMITTING, source="cluster", attempts=generation.attempts + 1)
    if time.time() - slot.at > limits.submit_limit().late_by:
        # The write took so long that the create would reach the provider well after its
        # slot, close to a later slot's call: the provider counts arrivals, so take another.
        slot = _take_slot(None if slot_at is None else slot.at)
        if not slot.granted:
            _requeue(generation_id, delay=timedelta(seconds=slot.wait))
            return
    try:
        task_id = client.create_task(
            prompt=image_request.prompt,
            aspect_ratio=image_request.aspect_ratio,
            resolution=image_request.resolution,
            output_format=image_request.output_format,
            image_urls=image_urls,
            callback_url=generation.callback_url() if settings.KIE_CALLBACKS else "",
        )
    except ProviderError as error:
        _record_submit_failure(generation_id, error)
        return
    if not _record_submission(generation_id, task_id):
        # The generation moved on (a resubmission after an ambiguous create won): this task
        # is billed all the same, so it is kept as a duplicate.
        claim_task(generation_id, task_id, client=client, ours=True)


def _take_slot(slot_at: float | None) -> limits.Slot:
    """Wait for the reserved moment; or, without one, wait for the first free slot.

    A job that starts too late for its moment takes a free slot only if one is free now,
    else goes back to the dispatcher: a worker asleep waiting for a slot would hold up
    the refreshes queued behind it.
    """
    limit = limits.submit_limit()
    if slot_at is None:
        return limits.acquire(limit, max_wait=settings.KIE_SLOT_MAX_WAIT)
    if time.time() - slot_at <= limit.late_by:
        time.sleep(max(0.0, slot_at - time.time()))
        return limits.Slot(granted=True, at=slot_at)
    return limits.acquire(limit, max_wait=limits.SEND_NOW)


def host_references(image_request: ImageRequest, *, client: KieClient) -> list[str]:
    """The provider-hosted URLs of a request's references, uploading those without a live one."""
    now = timezone.now()
    live_after = now + REFERENCE_MARGIN
    urls = []
    for asset in image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"):
        if not (asset.provider_url and asset.provider_url_expires_at > live_after):
            twin = (
                Asset.objects.filter(sha256=asset.sha256, provider_url_expires_at__gt=live_after)
                .exclude(provider_url="")
                .first()
            )
            if twin:
                asset.provider_url = twin.provider_url
                asset.provider_url_expires_at = twin.provider_url_expires_at
            else:
                with asset.file.open("rb") as stored:
                    uploaded = client.upload_file(
                        content=stored.read(),
                        file_name=f"{asset.sha256}.{asset.file.name.rsplit('.', 1)[-1]}",
                        content_type=asset.content_type,
                        upload_path="imagereview/references",
                    )
                asset.provider_url = uploaded.download_url
                asset.provider_url_expires_at = now + REFERENCE_TTL
            asset.save(update_fields=["provider_url", "provider_url_expires_at"])
        urls.append(asset.provider_url)
    return urls


def _defer(generation_id: int, *, reason: str, delay: timedelta) -> None:
    """Leave a generation queued until later; `reason`, if any, is shown to its requester."""
    changes = {"next_attempt_at": timezone.now() + delay}
    if reason:
        changes["failure_message"] = reason[:2000]
    Generation.objects.filter(pk=generation_id, state=G.QUEUED).update(**changes)


def _requeue(generation_id: int, *, delay: timedelta) -> None:
    """Put a generation whose create was not sent back in the queue."""
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation.state == G.SUBMITTING and not generation.provider_task_id:
            move(
                generation,
                G.QUEUED,
                source="cluster",
                note="no rate slot for the create; not sent",
                next_attempt_at=timezone.now() + delay,
            )


def _record_upload_failure(generation_id: int, error: ProviderError) -> None:
    """An upload makes no task: halt, fail on a refused file, or try again later."""
    log.warning("reference upload for generation %s failed: %s", generation_id, error)
    halt_on(error)
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.state != G.QUEUED:
            return
        failure = {"failure_code": str(error.code), "failure_message": error.message[:2000]}
        if error.action == Action.FAIL:
            note = f"reference upload refused: {error}"
            move(generation, G.FAILED, source="cluster", note=note, **failure)
            settle_request(generation.request_id)
            return
        generation.next_attempt_at = timezone.now() + backoff(
            generation.attempts + 1, retry_after=error.retry_after
        )
        for name, value in failure.items():
            setattr(generation, name, value)
        generation.save(update_fields=["next_attempt_at", *failure, "updated_at"])


def _record_submission(generation_id: int, task_id: str) -> bool:
    """Store the taskId with the submission; False when the generation no longer waits for it."""
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation.provider_task_id == task_id:
            return True  # an early callback claimed it already
        if generation.state != G.SUBMITTING or generation.provider_task_id:
            return False
        now = timezone.now()
        move(
            generation,
            G.SUBMITTED,
            source="cluster",
            note=f"task {task_id}",
            provider_task_id=task_id,
            provider_state="waiting",
            submitted_at=now,
            next_attempt_at=now + timedelta(seconds=settings.RECONCILE_FIRST_POLL),
            failure_code="",
            failure_message="",
        )
        end_trial()
    log.info("generation %s submitted as task %s", generation_id, task_id)
    return True


def _record_submit_failure(generation_id: int, error: ProviderError) -> None:
    log.warning("createTask for generation %s failed: %s (%s)", generation_id, error, error.action)
    halt_on(error)
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.state != G.SUBMITTING:
            return
        failure = {"failure_code": str(error.code), "failure_message": error.message[:2000]}
        if error.ambiguous:
            # The task may exist and be billed: wait for its callback, or for the reconciler
            # to resubmit after a grace period.
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
        if error.action == Action.HALT:
            delay = timedelta(0)  # the open circuit holds it back
        else:
            delay = backoff(generation.attempts, retry_after=error.retry_after)
        move(
            generation,
            G.QUEUED,
            source="cluster",
            note=f"{error.action}: {error}",
            next_attempt_at=timezone.now() + delay,
            **failure,
        )
