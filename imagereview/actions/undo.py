"""Undo: a reviewer takes back their own approve or reject within a short window, and the
request settles again where the decisions left standing put it, across a stage boundary too.
"""

import uuid

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from imagereview.actions import notifications
from imagereview.actions.review import DecisionRefused, pass_stages, request_standing
from imagereview.jobs import enqueue_after_commit
from imagereview.models import Decision, ImageRequest, Publication
from imagereview.transitions import lock, move, move_stage
from imagereview.verdicts import UNDO_WINDOW

R = ImageRequest.Status
V = Decision.Verdict


def undoable_decision(reviewer: AbstractBaseUser) -> Decision | None:
    """The reviewer's latest decision, on any request, while it is within the undo window.

    Undo means the last thing the reviewer did: a change request (which cannot be undone)
    is returned too, for the page to say so, rather than an older decision behind it. A
    decision of a bulk action comes with `batch_requests`, the ids of the requests the
    action decided, in order.
    """
    decision = (
        Decision.objects.filter(
            reviewer=reviewer,
            undone_at__isnull=True,
            created_at__gte=timezone.now() - UNDO_WINDOW,
        )
        .select_related("output__generation")
        .order_by("-created_at", "-id")
        .first()
    )
    if decision is not None:
        decision.batch_requests = []
        if decision.batch:
            together = Decision.objects.filter(batch=decision.batch, undone_at__isnull=True)
            requests = together.values_list("output__request_id", flat=True)
            decision.batch_requests = sorted(set(requests))
    return decision


def undo_batch(*, batch: uuid.UUID, reviewer: AbstractBaseUser) -> tuple[list[int], list[str]]:
    """Take back every decision of one bulk action: the ids of the requests undone, and why
    any decision could not be (each request is undone, or not, on its own)."""
    decisions = Decision.objects.filter(batch=batch, reviewer=reviewer, undone_at__isnull=True)
    undone, refusals = set(), []
    for decision_id, request_id in decisions.order_by("pk").values_list("pk", "output__request_id"):
        try:
            undo_decision(decision_id=decision_id, reviewer=reviewer)
        except DecisionRefused as refused:
            refusals.append(f"#{request_id}: {refused}")
        else:
            undone.add(request_id)
    return sorted(undone), refusals


def undo_decision(*, decision_id: int, reviewer: AbstractBaseUser) -> Decision:
    """Take back one's own approve or reject within a short window; settle the request again."""
    with transaction.atomic():
        decision = Decision.objects.select_related("output").filter(pk=decision_id).first()
        if decision is None or decision.reviewer_id != reviewer.pk:
            raise DecisionRefused("You can only undo your own decisions.")
        image_request = lock(ImageRequest, decision.output.request_id)
        decision.refresh_from_db()
        if decision.undone_at:
            return decision
        if decision.verdict == V.CHANGES:
            raise DecisionRefused("The revision is already submitted; it cannot be undone.")
        if timezone.now() - decision.created_at > UNDO_WINDOW:
            raise DecisionRefused("Too late to undo: decide again instead.")
        if (
            decision.verdict == V.APPROVE
            and decision.output.publications.exclude(state=Publication.State.FAILED).exists()
        ):
            raise DecisionRefused(
                "This output is already published: retract the publication instead."
            )
        if decision.stage_id and decision.stage_id != image_request.stage_id:
            _return_to_stage(image_request, decision, reviewer)
        decision.undone_at = timezone.now()
        decision.save(update_fields=["undone_at"])
        if image_request.status in (R.IN_REVIEW, R.APPROVED, R.REJECTED):
            _resettle_after_undo(image_request, reviewer)
        notifications.withdraw_held_decision(image_request)
    return decision


def _resettle_after_undo(image_request: ImageRequest, reviewer: AbstractBaseUser) -> None:
    """Move the request to where the remaining decisions put it, through review if it must."""
    standing = request_standing(image_request)
    if standing == image_request.status:
        return
    if image_request.status != R.IN_REVIEW:
        move(image_request, R.IN_REVIEW, source="review", actor=reviewer, note="undo")
    standing = pass_stages(image_request, standing, reviewer, note="undo")
    if standing != R.IN_REVIEW:
        move(image_request, standing, source="review", actor=reviewer, note="undo")
        enqueue_after_commit("notify_request_decided", image_request.pk)


def _return_to_stage(
    image_request: ImageRequest, decision: Decision, reviewer: AbstractBaseUser
) -> None:
    """Put the request back in the stage of a decision being undone, which it has since left,
    unless a later stage has decided on it: their decisions stand, and only they can undo them.
    """
    stage = decision.stage
    later = (
        Decision.objects.filter(
            output__request=image_request,
            undone_at__isnull=True,
            stage__workflow_id=stage.workflow_id,
            stage__position__gt=stage.position,
        )
        .select_related("stage")
        .order_by("stage__position", "id")
        .first()
    )
    if later:
        raise DecisionRefused(
            f"The request has moved on from {stage.name}: {later.stage.name} have already "
            "decided on it; ask them."
        )
    move_stage(image_request, stage, actor=reviewer, note="undo")
