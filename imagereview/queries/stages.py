"""Review stages as reviewers see them: whose queue a request is in, and the stages panel."""

from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from imagereview.models import Decision, ImageRequest, Stage, Workflow
from imagereview.verdicts import counting_rows, standings
from imagereview.workflows import StageRule, may_decide_in, need_text, stage_rule, stages_of

R = ImageRequest.Status


def in_stages_of(
    queryset: QuerySet[ImageRequest], reviewer: AbstractBaseUser
) -> QuerySet[ImageRequest]:
    """The requests the reviewer decides: those without stages, and those in a stage of one of
    their groups. Superusers decide every stage."""
    if reviewer.is_superuser:
        return queryset
    return queryset.filter(Q(stage__isnull=True) | Q(stage__reviewers__in=reviewer.groups.all()))


def stage_choices() -> list[tuple[str, str]]:
    """The queue's stage filter: every stage by workflow, and the requests without stages."""
    stages = Stage.objects.select_related("workflow").order_by("workflow__name", "position")
    if not stages:
        return []
    return [
        ("", "Any stage"),
        *((str(stage.pk), f"{stage.workflow.name}: {stage.name}") for stage in stages),
        ("none", "No stages"),
    ]


@dataclass
class StageRow:
    """One stage on the review page: where the request is in it, its need, its decisions."""

    stage: Stage
    # done, skipped, current, ended (the request was decided here), or upcoming
    state: str
    need: str
    decisions: list[Decision] = field(default_factory=list)
    # For the stage the request is in: how far it has got ("1 of 2 outputs approved").
    progress: str = ""

    @property
    def state_label(self) -> str:
        return {
            "done": "passed",
            "skipped": "skipped",
            "current": "now",
            "ended": "ended here",
            "upcoming": "to come",
        }[self.state]


@dataclass
class StagePanel:
    workflow: Workflow
    rows: list[StageRow]
    # Why the viewer cannot decide the current stage, if they cannot.
    not_yours: str = ""


def stage_panel(image_request: ImageRequest, viewer: AbstractBaseUser) -> StagePanel | None:
    """Every stage of the request's workflow in order, with each one's decisions (undone ones
    too, marked), or None for a request without stages."""
    if image_request.workflow_id is None or image_request.stage_id is None:
        return None
    current = image_request.stage
    rule = stage_rule(image_request)
    decisions: dict[int, list[Decision]] = {}
    for decision in (
        Decision.objects.filter(output__request=image_request, stage__isnull=False)
        .select_related("reviewer", "output__generation")
        .order_by("created_at", "id")
    ):
        decisions.setdefault(decision.stage_id, []).append(decision)
    rows = []
    for stage in stages_of(image_request.workflow):
        given = decisions.get(stage.pk, [])
        if stage.position < current.position:
            state = "done" if given else "skipped"
        elif stage.pk == current.pk:
            state = {R.IN_REVIEW: "current", R.APPROVED: "done"}.get(image_request.status, "ended")
        else:
            state = "upcoming"
        quota = rule.approval_quota if stage.pk == current.pk else stage.approval_quota
        row = StageRow(stage, state, need_text(stage.required_approvals, quota), decisions=given)
        if state == "current":
            row.progress = _progress(image_request, rule)
        rows.append(row)
    not_yours = ""
    if image_request.status == R.IN_REVIEW and not may_decide_in(current, viewer):
        not_yours = f"{current.reviewers.name} decide this stage; you are not one of them."
    return StagePanel(workflow=image_request.workflow, rows=rows, not_yours=not_yours)


def _progress(image_request: ImageRequest, rule: StageRule) -> str:
    tallies = standings(counting_rows(output__request=image_request, stage=rule.stage))
    approved = sum(
        1 for pk in rule.outputs if pk in tallies and tallies[pk].approved(rule.required_approvals)
    )
    up = len(rule.outputs)
    return (
        f"{approved} of {rule.approval_quota} approved so far; "
        f"{up} output{'s' if up != 1 else ''} up for decision"
    )


@dataclass(frozen=True)
class StageCount:
    stage: Stage
    count: int
    # Whether there are more than `count`: the count stopped at the bound.
    more: bool

    @property
    def shown(self) -> str:
        return f"{self.count:,}+" if self.more else f"{self.count:,}"


def stage_counts(reviewer: AbstractBaseUser, limit: int = 1000) -> list[StageCount]:
    """How many requests await review in each stage the reviewer decides, each count bounded
    by `limit` as the queue's status counts are: one small query per stage."""
    stages = Stage.objects.select_related("workflow").order_by("workflow__name", "position")
    if not reviewer.is_superuser:
        stages = stages.filter(reviewers__in=reviewer.groups.all())
    counts = []
    for stage in stages:
        waiting = ImageRequest.objects.filter(status=R.IN_REVIEW, stage=stage).order_by()
        found = len(waiting.values_list("pk", flat=True)[: limit + 1])
        counts.append(StageCount(stage, min(found, limit), found > limit))
    return counts
