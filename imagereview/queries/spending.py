"""What the workflow costs and what review keeps: the dashboard's cost and review figures.

Cost is counted by cohort: the requests created in the period, with every generation they
caused (failed, retried, duplicate and rejected work included), so that the credits and the
approved outputs of "cost per approved image" belong to the same work. Burn per day is by
completion day instead, because that is when credits leave the account.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncDate, TruncWeek
from django.utils import timezone

from imagereview.models import (
    Asset,
    Decision,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
    Publication,
)
from imagereview.queries.operations import SAMPLE, Period, percentile
from imagereview.verdicts import standings

R = ImageRequest.Status
V = Decision.Verdict
ZERO = Decimal(0)
GROUPS = {
    "mode": "request__mode",
    "resolution": "request__resolution",
    "requester": "request__requester__username",
}


def credit_price() -> Decimal:
    return Decimal(str(settings.CREDIT_PRICE))


@dataclass
class CostLine:
    """Credits spent on one group of work and the approved outputs it gave."""

    key: str
    credits: Decimal = ZERO
    estimated: Decimal = ZERO
    approved: int = 0

    @property
    def money(self) -> Decimal:
        return (self.credits * credit_price()).quantize(Decimal("0.01"))

    @property
    def per_approved(self) -> Decimal | None:
        return (self.credits / self.approved).quantize(Decimal("0.01")) if self.approved else None

    @property
    def money_per_approved(self) -> Decimal | None:
        per = self.per_approved
        return (per * credit_price()).quantize(Decimal("0.01")) if per is not None else None


@dataclass
class Cost:
    balance: Decimal | None
    total: CostLine
    # group name ("mode", "resolution", "requester", "week") -> lines
    groups: dict[str, list[CostLine]]
    # (day, credits) by completion day
    burn_by_day: list[tuple]
    recent_daily_burn: Decimal
    price: Decimal

    @property
    def days_left(self) -> float | None:
        if self.balance is None or not self.recent_daily_burn:
            return None
        return round(float(self.balance / self.recent_daily_burn), 1)


@dataclass
class CohortOutput:
    """An output of a request made in the period, and where review left it."""

    pk: int
    mode: str
    resolution: str
    requester: str
    generation_id: int
    generation_credits: Decimal | None
    checks: list
    created_at: datetime
    # "approve" once approved by enough reviewers, "reject", "changes", or "" (undecided)
    verdict: str = ""
    reason: str = ""


def cohort_outputs(period: Period) -> list[CohortOutput]:
    """The outputs of the period's requests with their standing, in two queries.

    Shared by `cost` and `review`, which a page showing both should fetch once.
    """
    cohort = Q(request__created_at__gte=period.start, request__created_at__lt=period.end)
    outputs = Asset.objects.filter(cohort, kind=Asset.Kind.OUTPUT)
    rows = outputs.values_list(
        "pk",
        "request__required_approvals",
        "request__mode",
        "request__resolution",
        "request__requester__username",
        "generation_id",
        "generation__credits",
        "checks",
        "request__created_at",
    )
    counting = list(
        Decision.objects.filter(undone_at__isnull=True, output__in=outputs)
        .order_by("created_at", "id")
        .values_list("output_id", "reviewer_id", "verdict", "reason")
    )
    tallies = standings((output, reviewer, verdict) for output, reviewer, verdict, _ in counting)
    last_reason = {(output, verdict): reason for output, _, verdict, reason in counting}
    found = []
    for pk, required, *facts in rows:
        output = CohortOutput(pk, *facts)
        tally = tallies.get(pk)
        if tally is not None and tally.approved(required):
            output.verdict = V.APPROVE
        elif tally is not None and tally.verdict in (V.REJECT, V.CHANGES):
            output.verdict = tally.verdict
            output.reason = last_reason.get((pk, tally.verdict), "")
        found.append(output)
    return found


def _week_key(week: datetime) -> str:
    """The Monday TruncWeek returns, as a date string."""
    return timezone.localtime(week).date().isoformat()


def _week_of(moment: datetime) -> str:
    """The Monday that starts the week of `moment`, as TruncWeek names it."""
    day = timezone.localtime(moment).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def cost(
    period: Period,
    *,
    outputs: list[CohortOutput] | None = None,
    now: datetime | None = None,
) -> Cost:
    """Credits of the requests created in the period, by group, and per approved output."""
    now = now or timezone.now()
    in_period = Q(request__created_at__gte=period.start, request__created_at__lt=period.end)
    spent = Generation.objects.filter(in_period, credits__isnull=False)
    sums = {
        "spent": Sum("credits"),
        "spent_estimated": Sum("credits", filter=Q(credits_estimated=True)),
    }
    if outputs is None:
        outputs = cohort_outputs(period)
    approved = [
        (output.mode, output.resolution, output.requester)
        for output in outputs
        if output.verdict == V.APPROVE
    ]
    # One grouped query holds every group's sums: a handful of rows, however much work.
    cells = [
        (mode, resolution, requester, _week_key(week), credits or ZERO, estimated or ZERO)
        for mode, resolution, requester, week, credits, estimated in spent.annotate(
            week=TruncWeek("request__created_at")
        )
        .values_list(*GROUPS.values(), "week")
        .annotate(**sums)
        .order_by()
    ]
    groups: dict[str, list[CostLine]] = {}
    for position, name in enumerate([*GROUPS, "week"]):
        if name == "week":
            counts = Counter(
                _week_of(output.created_at) for output in outputs if output.verdict == V.APPROVE
            )
        else:
            counts = Counter(row[position] for row in approved)
        lines: dict = {}
        for cell in cells:
            line = lines.setdefault(cell[position], CostLine(str(cell[position])))
            line.credits += cell[4]
            line.estimated += cell[5]
        for key, n in counts.items():
            # A week is listed for the credits spent in it, as TruncWeek names it.
            if name != "week" or key in lines:
                lines.setdefault(key, CostLine(str(key))).approved = n
        groups[name] = sorted(lines.values(), key=lambda line: line.key)
    spent_total = sum((cell[4] for cell in cells), ZERO)
    spent_estimated = sum((cell[5] for cell in cells), ZERO)
    account = ProviderAccount.objects.filter(provider="kie").first()
    return Cost(
        balance=account.credits if account else None,
        total=CostLine("all", spent_total, spent_estimated, len(approved)),
        groups=groups,
        burn_by_day=burn_by_day(period),
        recent_daily_burn=_recent_daily_burn(now),
        price=credit_price(),
    )


def burn_by_day(period: Period) -> list[tuple]:
    """(day, credits) spent per completion day, every day of the period listed."""
    spent = dict(
        Generation.objects.filter(
            completed_at__gte=period.start, completed_at__lt=period.end, credits__isnull=False
        )
        .annotate(day=TruncDate("completed_at"))
        .values_list("day")
        .annotate(credits=Sum("credits"))
        .order_by("day")
    )
    return [(day, spent.get(day) or ZERO) for day in period.days]


def _recent_daily_burn(now: datetime) -> Decimal:
    """Credits per day over the last 7 days, the rate "days left" assumes."""
    spent = Generation.objects.filter(
        completed_at__gte=now - timedelta(days=7), completed_at__lt=now
    ).aggregate(credits=Sum("credits"))["credits"]
    return (spent or ZERO) / 7


@dataclass
class LossLine:
    verdict: str
    reason: str
    outputs: int = 0
    credits: Decimal = ZERO


@dataclass
class Review:
    decided: int
    approved: int
    rejected: int
    changes: int
    undone: int
    loss: list[LossLine]
    ready_to_decided_p50: float | None
    ready_to_decided_p95: float | None
    waiting: int
    oldest_waiting: datetime | None
    # check name -> (failed, checked)
    checks: dict[str, tuple[int, int]]
    publications: dict[str, int] = field(default_factory=dict)

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None


def review(period: Period, *, outputs: list[CohortOutput] | None = None) -> Review:
    """Where the outputs of the period's requests stand, what review threw away, how fast."""
    if outputs is None:
        outputs = cohort_outputs(period)
    per_generation = Counter(output.generation_id for output in outputs)
    verdicts = Counter(output.verdict for output in outputs)
    loss: dict[tuple[str, str], LossLine] = {}
    checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for output in outputs:
        for check in output.checks or []:
            checks[check.get("name", "")][1] += 1
            checks[check.get("name", "")][0] += 0 if check.get("passed") else 1
        if output.verdict not in (V.REJECT, V.CHANGES):
            continue
        line = loss.setdefault(
            (output.verdict, output.reason), LossLine(output.verdict, output.reason)
        )
        line.outputs += 1
        line.credits += (output.generation_credits or ZERO) / per_generation[output.generation_id]
    undone = Decision.objects.filter(
        undone_at__isnull=False,
        output__request__created_at__gte=period.start,
        output__request__created_at__lt=period.end,
    ).count()
    p50, p95 = _ready_to_decided(period)
    waiting = ImageRequest.objects.filter(status=R.IN_REVIEW).aggregate(
        n=Count("id"), oldest=Min("updated_at")
    )
    publications = dict(
        Publication.objects.filter(created_at__gte=period.start, created_at__lt=period.end)
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    return Review(
        decided=verdicts[V.APPROVE] + verdicts[V.REJECT] + verdicts[V.CHANGES],
        approved=verdicts[V.APPROVE],
        rejected=verdicts[V.REJECT],
        changes=verdicts[V.CHANGES],
        undone=undone,
        loss=sorted(loss.values(), key=lambda line: (-line.credits, line.reason)),
        ready_to_decided_p50=p50,
        ready_to_decided_p95=p95,
        waiting=waiting["n"],
        oldest_waiting=waiting["oldest"],
        checks={name: (failed, checked) for name, (failed, checked) in sorted(checks.items())},
        publications=publications,
    )


def _ready_to_decided(period: Period) -> tuple[float | None, float | None]:
    """p50 and p95 seconds from a request entering review to its first decision after it.

    Over the audit events of requests that left review in the period (a bounded sample).
    """
    left = (
        Event.objects.filter(
            subject="request",
            from_state=R.IN_REVIEW,
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
        .exclude(to_state=R.GENERATING)
        .order_by("-created_at")
        .values_list("request_id", "created_at")[:SAMPLE]
    )
    left = list(left)
    entered = defaultdict(list)
    for request_id, at in Event.objects.filter(
        subject="request", to_state=R.IN_REVIEW, request_id__in={r for r, _ in left}
    ).values_list("request_id", "created_at"):
        entered[request_id].append(at)
    waits = []
    for request_id, decided_at in left:
        before = [at for at in entered[request_id] if at <= decided_at]
        if before:
            waits.append((decided_at - max(before)).total_seconds())
    return percentile(waits, 0.5), percentile(waits, 0.95)
