"""Review stages: where a request stands in its workflow, what its stage asks, who decides.

A request without a workflow has one implicit stage: any reviewer, with the request's own
approvals and quota, as before workflows existed. Reads only; the moves are the review
actions'.

The outputs up for decision in a stage are those that passed the stage before it. A stage
nobody decided was skipped (a revision may start past the first stage), so the outputs
pass through it unchanged.
"""

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser

from imagereview.models import Asset, ImageRequest, Stage, Workflow
from imagereview.verdicts import OutputTally, counting_rows, standings


@dataclass
class StageStanding:
    """One stage of a request's workflow: the outputs up for decision and their tallies."""

    stage: Stage
    outputs: list[int]
    tallies: dict[int, OutputTally] = field(default_factory=dict)
    decided: bool = False

    @property
    def quota(self) -> int:
        """Approved outputs the stage needs: at most the outputs it was given, at least one."""
        return max(1, min(self.stage.approval_quota, len(self.outputs)))

    @property
    def passed(self) -> list[int]:
        needed = self.stage.required_approvals
        return [
            pk for pk in self.outputs if pk in self.tallies and self.tallies[pk].approved(needed)
        ]


@dataclass(frozen=True)
class StageRule:
    """What the stage a request is in asks for, and the outputs up for decision in it."""

    stage: Stage | None
    required_approvals: int
    approval_quota: int
    outputs: list[int]
    # The stage after this one; None when passing this one approves the request.
    following: Stage | None = None


def default_workflow() -> Workflow | None:
    return Workflow.objects.filter(is_default=True).first()


def stages_of(workflow: Workflow) -> list[Stage]:
    return list(workflow.stages.select_related("reviewers").order_by("position"))


def entry_stage(workflow: Workflow | None, *, revision: bool = False) -> Stage | None:
    """The stage a new request starts in; a revision's is the workflow's `revision_starts_at`,
    or the last stage before it when no stage has that position."""
    if workflow is None:
        return None
    stages = stages_of(workflow)
    if not stages:
        return None
    if not revision:
        return stages[0]
    before = [stage for stage in stages if stage.position <= workflow.revision_starts_at]
    return before[-1] if before else stages[0]


def following_stage(stage: Stage | None) -> Stage | None:
    if stage is None:
        return None
    return (
        Stage.objects.filter(workflow_id=stage.workflow_id, position__gt=stage.position)
        .order_by("position")
        .first()
    )


def may_decide_in(stage: Stage | None, user: AbstractBaseUser) -> bool:
    """Whether the user is one of the stage's reviewers: everyone is, in the implicit stage."""
    if stage is None or user.is_superuser:
        return True
    return user.groups.filter(pk=stage.reviewers_id).exists()


def stage_standings(image_request: ImageRequest) -> list[StageStanding]:
    """The stages of the request's workflow in order, up to the one it is in, with the
    outputs each was given and their tallies."""
    if image_request.workflow_id is None:
        return []
    stages = stages_of(image_request.workflow)
    outputs = list(
        image_request.assets.filter(kind=Asset.Kind.OUTPUT)
        .order_by("generation__variant", "generation_id", "index")
        .values_list("pk", flat=True)
    )
    result = []
    for stage in stages:
        rows = list(counting_rows(output__request=image_request, stage=stage))
        standing = StageStanding(
            stage=stage, outputs=outputs, tallies=standings(rows), decided=bool(rows)
        )
        result.append(standing)
        if stage.pk == image_request.stage_id:
            break
        if standing.decided:
            outputs = standing.passed
    return result


def stage_rule(image_request: ImageRequest) -> StageRule:
    """What the request's current stage needs, or the request's own needs without one."""
    if image_request.stage_id is None:
        outputs = list(
            image_request.assets.filter(kind=Asset.Kind.OUTPUT).values_list("pk", flat=True)
        )
        return StageRule(
            stage=None,
            required_approvals=image_request.required_approvals,
            approval_quota=image_request.approval_quota,
            outputs=outputs,
        )
    current = stage_standings(image_request)[-1]
    return StageRule(
        stage=current.stage,
        required_approvals=current.stage.required_approvals,
        approval_quota=current.quota,
        outputs=current.outputs,
        following=following_stage(current.stage),
    )


def need_text(required_approvals: int, approval_quota: int) -> str:
    """A stage's need as the review page says it: "2 approvals per output, 1 output"."""
    approvals = f"{required_approvals} approval{'s' if required_approvals != 1 else ''}"
    outputs = f"{approval_quota} output{'s' if approval_quota != 1 else ''}"
    return f"{approvals} per output, {outputs}"
