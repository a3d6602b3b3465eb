"""Review: reviewers' verdicts on outputs, and the acceptance rules' own.

An output is approved once `required_approvals` distinct reviewers approve it; a request is
approved once `approval_quota` of its outputs are, and rejected once that can no longer
happen. Requesting changes submits a revision at once and closes this version.

With a workflow, the request goes through its stages in order: each stage's group decides it
by the stage's own needs, among the outputs the stage before passed (see `workflows`).
Passing a stage moves the request on; passing the last one approves it.
"""

import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from imagereview import guides
from imagereview.actions import annotations, webhooks
from imagereview.actions.claims import RELEASED
from imagereview.jobs import enqueue_after_commit
from imagereview.models import Annotation, Asset, Decision, ImageRequest
from imagereview.transitions import lock, move, move_stage
from imagereview.verdicts import OutputTally, counting_rows, standings
from imagereview.workflows import following_stage, may_decide_in, stage_rule

log = logging.getLogger(__name__)

R = ImageRequest.Status
V = Decision.Verdict

# The reject reason an automatic rejection gives for each failed check.
CHECK_REASONS = {
    "format": Decision.Reason.SIZE,
    "aspect_ratio": Decision.Reason.SIZE,
    "resolution": Decision.Reason.SIZE,
    "reference": Decision.Reason.PROMPT,
}


class DecisionRefused(Exception):
    """A decision that the rules do not allow; the message is for the reviewer."""


class DecisionConflict(DecisionRefused):
    """Someone else decided the same output since this reviewer looked at it."""


def tally(image_request: ImageRequest, *, viewer: AbstractBaseUser | None = None) -> dict:
    """Each output's standing in the request's current stage, from the decisions that count
    (latest per reviewer, not undone)."""
    return standings(
        counting_rows(output__request=image_request, stage_id=image_request.stage_id),
        viewer_id=viewer.pk if viewer else None,
    )


def latest_verdicts(image_request: ImageRequest) -> dict[int, str]:
    """The standing verdict of each output that has one."""
    return {pk: t.verdict for pk, t in tally(image_request).items() if t.verdict}


def reviews_own_request(image_request: ImageRequest, reviewer: AbstractBaseUser) -> bool:
    """Whether separation of duties keeps this reviewer from any verdict on the request.

    Every verdict counts, not only approval: a reject or a request for changes on one's own
    request is a decision too (and changes would start a revision nobody else asked for).
    """
    return settings.REVIEW_FORBID_SELF_APPROVAL and image_request.requester_id == reviewer.pk


def check_may_decide(image_request: ImageRequest, reviewer: AbstractBaseUser) -> None:
    if image_request.status != R.IN_REVIEW:
        raise DecisionRefused("This request is not awaiting review any more.")
    if reviews_own_request(image_request, reviewer):
        raise DecisionRefused("You asked for this image, so someone else has to review it.")
    stage = image_request.stage
    if not may_decide_in(stage, reviewer):
        raise DecisionRefused(
            f"This request is in the {stage.name} stage, which only its reviewers "
            f"({stage.reviewers.name}) decide."
        )


def decide(
    *,
    output: Asset,
    reviewer: AbstractBaseUser,
    verdict: str,
    reason: str = "",
    comment: str = "",
    seen_decision_id: int | None = None,
) -> Decision:
    """Record a reviewer's verdict on one output and settle the request when it is decided.

    `seen_decision_id` is the latest decision on the output the reviewer had in view (0 for
    none): a newer one by someone else is a conflict, reported instead of silently stacked.
    """
    if output.kind != Asset.Kind.OUTPUT:
        raise DecisionRefused("Only outputs can be reviewed.")
    if verdict == V.REJECT and not reason:
        raise DecisionRefused("A reject needs a reason.")
    if verdict == V.CHANGES:
        raise DecisionRefused("Request changes with the revision form.")
    with transaction.atomic():
        image_request = lock(ImageRequest, output.request_id)
        decision = _record_decision(
            image_request, output, reviewer, verdict, reason, comment, seen_decision_id
        )
    log.info("%s: %s on output %s", reviewer, verdict, output.pk)
    return decision


@dataclass
class BulkOutcome:
    """What a bulk decision did to one request."""

    decided: int = 0
    conflicts: list[str] = field(default_factory=list)
    status: str = ""


def decide_undecided(
    *,
    image_request_id: int,
    reviewer: AbstractBaseUser,
    verdict: str,
    reason: str = "",
    comment: str = "",
    seen_decision_id: int | None = None,
    batch: uuid.UUID | None = None,
) -> BulkOutcome:
    """Give `verdict` to each output of a request the reviewer has not decided, until it settles.

    Outputs already rejected, or already decided by this reviewer, are left alone; an output
    someone else decided after `seen_decision_id` is a conflict, reported and not decided.
    The decisions carry `batch`, shared by the whole bulk action, so that one undo takes the
    action back.
    """
    if verdict == V.REJECT and not reason:
        raise DecisionRefused("A reject needs a reason.")
    outcome, decided = BulkOutcome(), []
    with transaction.atomic():
        image_request = lock(ImageRequest, image_request_id)
        if image_request is None:
            raise DecisionRefused("This request does not exist.")
        check_may_decide(image_request, reviewer)
        standings = tally(image_request, viewer=reviewer)
        stage_id, up_for_decision = image_request.stage_id, set(stage_rule(image_request).outputs)
        outputs = image_request.assets.filter(kind=Asset.Kind.OUTPUT).select_related("generation")
        for output in outputs.order_by("generation__variant", "generation_id", "index"):
            # A request that moved on to its next stage awaits that stage's reviewers.
            if image_request.status != R.IN_REVIEW or image_request.stage_id != stage_id:
                break
            if output.pk not in up_for_decision:
                continue
            newer = _newer_decision(output, reviewer, seen_decision_id)
            if newer:
                outcome.conflicts.append(
                    f"{newer.decided_by()} decided variant "
                    f"{output.generation.variant} ({newer.get_verdict_display().lower()})"
                )
                continue
            standing = standings.get(output.pk)
            if standing and (standing.rejected or standing.decided_by_me):
                continue
            decision = _record_decision(
                image_request, output, reviewer, verdict, reason, comment, None
            )
            decided.append(decision.pk)
            outcome.decided += 1
        if batch and decided:
            Decision.objects.filter(pk__in=decided).update(batch=batch)
        outcome.status = image_request.status
    log.info("%s: %s on %s outputs of %s", reviewer, verdict, outcome.decided, image_request_id)
    return outcome


def _newer_decision(
    output: Asset, reviewer: AbstractBaseUser, seen_decision_id: int | None
) -> Decision | None:
    """Someone else's decision on the output after the one the reviewer saw, if any."""
    if seen_decision_id is None:
        return None
    return (
        Decision.objects.filter(output=output, pk__gt=seen_decision_id)
        .exclude(reviewer=reviewer)
        .select_related("reviewer")
        .first()
    )


def _record_decision(
    image_request: ImageRequest,
    output: Asset,
    reviewer: AbstractBaseUser,
    verdict: str,
    reason: str,
    comment: str,
    seen_decision_id: int | None,
) -> Decision:
    """Call inside a transaction holding the request's row lock."""
    check_may_decide(image_request, reviewer)
    newer = _newer_decision(output, reviewer, seen_decision_id)
    if newer:
        raise DecisionConflict(
            f"{newer.decided_by()} decided this output "
            f"({newer.get_verdict_display().lower()}) while you were looking at it. "
            "Review their decision, then decide again."
        )
    if image_request.stage_id and output.pk not in stage_rule(image_request).outputs:
        raise DecisionRefused(
            "This output did not pass an earlier stage, so it is not up for decision in "
            f"{image_request.stage.name}."
        )
    before = _standing_of(output, image_request)
    decision = Decision.objects.create(
        output=output,
        reviewer=reviewer,
        verdict=verdict,
        reason=reason,
        comment=comment,
        stage=image_request.stage,
    )
    _announce(image_request, output, before, decision)
    _settle_review(image_request, reviewer)
    return decision


def _standing_of(output: Asset, image_request: ImageRequest | None = None) -> OutputTally | None:
    """The output's standing in its request's current stage; pass the request read under its
    lock, or it is read again."""
    if image_request is None:
        image_request = ImageRequest.objects.only("stage_id").get(pk=output.request_id)
    rows = counting_rows(output=output, stage_id=image_request.stage_id)
    return standings(rows).get(output.pk)


def _announce(
    image_request: ImageRequest, output: Asset, before: OutputTally | None, decision: Decision
) -> None:
    """Tell subscribers when the decision approved or rejected the output, and publish an
    approved one when the request (or the setting) says so. Call in the decision's transaction.
    """
    from imagereview.actions import publishing

    after = _standing_of(output, image_request)
    stage = image_request.stage
    needed = stage.required_approvals if stage else image_request.required_approvals
    data = {
        **output_data(image_request, output),
        "reason": decision.reason,
        "comment": decision.comment,
        "approvals": len(after.approvals) if after else 0,
        "required_approvals": needed,
    }
    # Approved for good (told, published) only once it passes the last stage.
    final = following_stage(stage) is None
    if final and after and after.approved(needed) and not (before and before.approved(needed)):
        webhooks.emit("output.approved", data, request_id=image_request.pk)
        if publishes_on_approval(image_request):
            publishing.publish(output=output, actor=None, source="auto-publish", check_file=False)
    if after and after.rejected and not (before and before.rejected):
        webhooks.emit("output.rejected", data, request_id=image_request.pk)


def publishes_on_approval(image_request: ImageRequest) -> bool:
    if image_request.auto_publish is not None:
        return image_request.auto_publish
    return settings.PUBLISH_ON_APPROVAL


def output_data(image_request: ImageRequest, output: Asset) -> dict:
    """What subscribers are told of an output."""
    return {
        "request_id": image_request.pk,
        "request_url": settings.PUBLIC_BASE_URL + image_request.get_absolute_url(),
        "revision": image_request.revision,
        "mode": image_request.mode,
        "prompt": image_request.prompt,
        "output_id": output.pk,
        "sha256": output.sha256,
        "width": output.width,
        "height": output.height,
        "content_type": output.content_type,
    }


def request_changes(
    *,
    output: Asset,
    reviewer: AbstractBaseUser,
    prompt: str,
    aspect_ratio: str,
    resolution: str,
    output_format: str,
    variants: int,
    comment: str = "",
    edit_from_output: bool = False,
    annotation_ids: Sequence[int] = (),
    guide_image: bool = False,
) -> ImageRequest:
    """Close this version with a request for changes and submit its revision at once.

    The revision keeps the request's mode and references, or, with `edit_from_output`,
    becomes an edit of this output. The notes named by `annotation_ids` are marked answered
    by the revision; with `guide_image`, a copy of the output with them drawn in goes to the
    provider as a second reference.
    """
    from imagereview.actions.requests import ReferenceUpload, create_request

    guide = None
    if annotation_ids and guide_image:
        if not edit_from_output:
            raise DecisionRefused(
                "A guide image goes with an edit of this output: tick “Start the revision as "
                "an edit of this output”, or leave the guide image out."
            )
        # Drawn before taking the lock (a 4K output takes a second); checked again under it.
        check_may_decide(output.request, reviewer)
        notes = _notes_to_answer(output, annotation_ids)
        guide = ReferenceUpload("guide.jpg", io.BytesIO(guides.draw_guide(output, notes)))
    with transaction.atomic():
        image_request = lock(ImageRequest, output.request_id)
        check_may_decide(image_request, reviewer)
        notes = _notes_to_answer(output, annotation_ids) if annotation_ids else []
        if edit_from_output:
            mode, references = ImageRequest.Mode.EDIT, [output, guide] if guide else [output]
        else:
            mode = image_request.mode
            references = list(
                image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index")
            )
        revision = create_request(
            requester=image_request.requester,
            mode=mode,
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            output_format=output_format,
            variants=variants,
            parent=image_request,
            references=references,
            acceptance_rules=image_request.acceptance_rules,
            required_approvals=image_request.required_approvals,
            approval_quota=min(image_request.approval_quota, variants),
            auto_publish=image_request.auto_publish,
            due_at=image_request.due_at,
            priority=image_request.priority,
            workflow=image_request.workflow,
        )
        Decision.objects.create(
            output=output,
            reviewer=reviewer,
            verdict=V.CHANGES,
            comment=comment,
            revision=revision,
            stage=image_request.stage,
        )
        Annotation.objects.filter(pk__in=[note.pk for note in notes]).update(answered_by=revision)
        webhooks.emit(
            "request.changes_requested",
            {
                **output_data(image_request, output),
                "comment": comment,
                "revision_id": revision.pk,
                "revision_url": settings.PUBLIC_BASE_URL + revision.get_absolute_url(),
                "revised_prompt": revision.prompt,
            },
            request_id=image_request.pk,
        )
        move(
            image_request,
            R.CHANGES_REQUESTED,
            source="review",
            actor=reviewer,
            note=f"revision #{revision.pk}",
            **RELEASED,
        )
        enqueue_after_commit("notify_request_decided", image_request.pk)
    return revision


def _notes_to_answer(output: Asset, annotation_ids: Sequence[int]) -> list[Annotation]:
    try:
        return annotations.notes_to_answer(output, annotation_ids)
    except annotations.AnnotationRefused as refused:
        raise DecisionRefused(str(refused)) from refused


def apply_acceptance_rules(image_request: ImageRequest) -> None:
    """Reject, on the rules' own authority, undecided outputs whose checks the rules enforce.

    Call inside a transaction holding the request's row lock, while it is in review.
    """
    enforced = set(image_request.acceptance_rules.get("auto_reject", []))
    if not enforced:
        return
    decided = set(
        Decision.objects.filter(output__request=image_request).values_list("output_id", flat=True)
    )
    rejected = 0
    for output in image_request.assets.filter(kind=Asset.Kind.OUTPUT, flagged=True):
        failed = [c for c in output.checks if not c["passed"] and c["name"] in enforced]
        if output.pk in decided or not failed:
            continue
        Decision.objects.create(
            output=output,
            reviewer=None,
            verdict=V.REJECT,
            reason=CHECK_REASONS.get(failed[0]["name"], Decision.Reason.OTHER),
            comment="Rejected automatically: " + "; ".join(c["detail"] for c in failed),
            stage=image_request.stage,
        )
        webhooks.emit(
            "output.rejected",
            {
                **output_data(image_request, output),
                "reason": CHECK_REASONS.get(failed[0]["name"], Decision.Reason.OTHER),
                "comment": "Rejected automatically by the acceptance rules.",
                "approvals": 0,
                "required_approvals": image_request.required_approvals,
            },
            request_id=image_request.pk,
        )
        rejected += 1
    if rejected:
        _settle_review(image_request, None)


def request_standing(image_request: ImageRequest) -> str:
    """The status the decisions that count put the request in: decided, or still in review.

    In a stage, among the outputs up for decision there and by its needs: APPROVED means the
    stage is passed, which approves the request only at the last stage.
    """
    rule = stage_rule(image_request)
    outputs = rule.outputs
    standing_of = tally(image_request)
    approved = sum(
        1
        for pk in outputs
        if pk in standing_of and standing_of[pk].approved(rule.required_approvals)
    )
    rejected = sum(1 for pk in outputs if pk in standing_of and standing_of[pk].rejected)
    if approved >= rule.approval_quota:
        return R.APPROVED
    if len(outputs) - rejected < rule.approval_quota:
        return R.REJECTED
    return R.IN_REVIEW


def pass_stages(
    image_request: ImageRequest, standing: str, actor: AbstractBaseUser | None, note: str = ""
) -> str:
    """Move the request on through each stage its decisions pass, releasing its claim for the
    next stage's reviewers; return where it stands in the stage it ends in."""
    while standing == R.APPROVED and (following := following_stage(image_request.stage)):
        move_stage(image_request, following, actor=actor, note=note, **RELEASED)
        standing = request_standing(image_request)
    return standing


def _settle_review(
    image_request: ImageRequest, reviewer: AbstractBaseUser | None, *, source: str = ""
) -> None:
    """Close the request once it is decided, or move it on to its next stage, releasing its
    claim. Call while it is in review."""
    standing = pass_stages(image_request, request_standing(image_request), reviewer)
    if standing != R.IN_REVIEW:
        source = source or ("review" if reviewer else "acceptance rules")
        move(image_request, standing, source=source, actor=reviewer, **RELEASED)
        enqueue_after_commit("notify_request_decided", image_request.pk)
