"""Review: reviewers' verdicts on outputs, and the acceptance rules' own."""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from imagereview.models import Asset, Decision, ImageRequest
from imagereview.transitions import lock, move

log = logging.getLogger(__name__)

R = ImageRequest.Status

# The reject reason an automatic rejection gives for each failed check.
CHECK_REASONS = {
    "format": Decision.Reason.SIZE,
    "aspect_ratio": Decision.Reason.SIZE,
    "resolution": Decision.Reason.SIZE,
    "reference": Decision.Reason.PROMPT,
}


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
        image_request = lock(ImageRequest, output.request_id)
        if image_request.status != R.IN_REVIEW:
            raise DecisionRefused("This request is not awaiting review.")
        decision = Decision.objects.create(
            output=output, reviewer=reviewer, verdict=verdict, reason=reason, comment=comment
        )
        _settle_review(image_request, reviewer)
    log.info("%s: %s on output %s", reviewer, verdict, output.pk)
    return decision


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
            verdict=Decision.Verdict.REJECT,
            reason=CHECK_REASONS.get(failed[0]["name"], Decision.Reason.OTHER),
            comment="Rejected automatically: " + "; ".join(c["detail"] for c in failed),
        )
        rejected += 1
    if rejected:
        _settle_review(image_request, None)


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


def _settle_review(image_request: ImageRequest, reviewer: AbstractBaseUser | None) -> None:
    outputs = image_request.assets.filter(kind=Asset.Kind.OUTPUT).values_list("pk", flat=True)
    verdicts = latest_verdicts(image_request)
    if not all(pk in verdicts for pk in outputs):
        return
    source = "review" if reviewer else "acceptance rules"
    approvals = sum(1 for verdict in verdicts.values() if verdict == Decision.Verdict.APPROVE)
    if approvals >= image_request.required_approvals:
        to = R.APPROVED
    elif Decision.Verdict.CHANGES in verdicts.values():
        to = R.CHANGES_REQUESTED
    else:
        to = R.REJECTED
    move(image_request, to, source=source, actor=reviewer)
