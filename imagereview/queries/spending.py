"""What the workflow costs and what review keeps: the dashboard's cost and review figures.

Cost is counted by cohort: the requests created in the period, with every generation they
caused (failed, retried, duplicate and rejected work included), so that the credits and the
approved outputs of "cost per approved image" belong to the same work. Burn per day is by
completion day instead, because that is when credits leave the account.

The cohort figures are read from the daily rows `actions.figures` keeps (per day of request
creation), so they count whole days and cost a few grouped rows whatever the volume.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.utils import timezone

from imagereview.models import (
    DailyFigure,
    Decision,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
    Publication,
)
from imagereview.queries.operations import SAMPLE, Period, per_day, percentile

R = ImageRequest.Status
V = Decision.Verdict
ZERO = Decimal(0)
GROUPS = {"mode": "mode", "resolution": "resolution", "requester": "requester__username"}


def credit_price() -> Decimal:
    return Decimal(str(settings.CREDIT_PRICE))


@dataclass
class CostLine:
    """Credits spent on one group of work and the approved outputs it gave."""

    key: str
    credits: Decimal = ZERO
    estimated: Decimal = ZERO
    approved: int = 0
    # Whether any work of the group has a cost recorded (a week is listed only then).
    spent: bool = False

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


def _figures(period: Period) -> QuerySet[DailyFigure]:
    """The daily rows of the period's days (cost and review count whole days)."""
    days = period.days
    return DailyFigure.objects.filter(day__gte=days[0], day__lte=days[-1])


def _week_of(day: date) -> str:
    """The Monday that starts the week of `day`, as a date string."""
    return (day - timedelta(days=day.weekday())).isoformat()


def cost(period: Period, *, now: datetime | None = None) -> Cost:
    """Credits of the requests created in the period, by group, and per approved output."""
    now = now or timezone.now()
    # Credits spent and outputs approved: a few rows per group, however much work.
    counted = _figures(period).filter(Q(figure="spend") | Q(figure="verdict", label=V.APPROVE))
    sums = {"n": Sum("count"), "credits": Sum("credits"), "estimated": Sum("estimated")}
    by_cell = counted.values_list("figure", *GROUPS.values()).annotate(**sums).order_by()
    by_day = counted.values_list("figure", "day").annotate(**sums).order_by()
    groups: dict[str, list[CostLine]] = {}
    total = CostLine("all")
    for position, name in enumerate(GROUPS, start=1):
        lines: dict[str, CostLine] = {}
        for row in by_cell:
            _add(lines.setdefault(row[position], CostLine(str(row[position]))), row[0], *row[-3:])
        groups[name] = sorted(lines.values(), key=lambda line: line.key)
    for figure, *_, n, credits, estimated in by_cell:
        _add(total, figure, n, credits, estimated)
    weeks: dict[str, CostLine] = {}
    for figure, day, n, credits, estimated in by_day:
        _add(
            weeks.setdefault(_week_of(day), CostLine(_week_of(day))), figure, n, credits, estimated
        )
    # A week is listed for the credits spent in it.
    groups["week"] = sorted(
        (line for line in weeks.values() if line.credits or line.estimated or line.spent),
        key=lambda line: line.key,
    )
    account = ProviderAccount.objects.filter(provider="kie").first()
    return Cost(
        balance=account.credits if account else None,
        total=total,
        groups=groups,
        burn_by_day=burn_by_day(period),
        recent_daily_burn=recent_daily_burn(now),
        price=credit_price(),
    )


def _add(
    line: CostLine, figure: str, n: int | None, credits: Decimal | None, estimated: Decimal | None
) -> None:
    if figure == "spend":
        line.credits += credits or ZERO
        line.estimated += estimated or ZERO
        line.spent = True
    else:
        line.approved += n or 0


def burn_by_day(period: Period) -> list[tuple]:
    """(day, credits) spent per completion day, every day of the period listed."""
    spent = {
        day: credits
        for day, credits in per_day(
            Generation.objects.filter(credits__isnull=False),
            "completed_at",
            period,
            value=Sum("credits"),
        )
    }
    return [(day, spent.get(day) or ZERO) for day in period.days]


def recent_daily_burn(now: datetime) -> Decimal:
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


def review(period: Period) -> Review:
    """Where the outputs of the period's requests stand, what review threw away, how fast."""
    verdicts: Counter[str] = Counter()
    loss: list[LossLine] = []
    checks: dict[str, tuple[int, int]] = {}
    undone = 0
    lines = (
        _figures(period)
        .exclude(figure__in=["spend", "requests"])
        .values_list("figure", "label")
        .annotate(n=Sum("count"), failed=Sum("failed"), credits=Sum("credits"))
        .order_by()
    )
    for figure, label, n, failed, credits in lines:
        if figure == "verdict":
            verdicts[label] += n
        elif figure == "loss":
            verdict, _, reason = label.partition(":")
            loss.append(LossLine(verdict, reason, n, credits))
        elif figure == "check":
            checks[label] = (failed, n)
        elif figure == "undone":
            undone += n
    loss.sort(key=lambda line: (-line.credits, line.reason))
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
        loss=loss,
        ready_to_decided_p50=p50,
        ready_to_decided_p95=p95,
        waiting=waiting["n"],
        oldest_waiting=waiting["oldest"],
        checks=dict(sorted(checks.items())),
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
