"""The health figures of the operations dashboard: volume, stuck work, failures, callbacks.

Each figure is one function over a period [start, end) returning a small dataclass, built
from a fixed number of aggregate queries. Percentiles are computed in Python over a bounded
sample (the latest `SAMPLE` rows of the period), which keeps them exact for ordinary periods
and cheap for huge ones. Cost and review figures live in `queries.spending`.
"""

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Case, Count, Exists, F, Min, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.aggregates import Aggregate
from django.db.models.functions import Substr
from django.utils import timezone

from imagereview.models import (
    CallbackReceipt,
    DailyFigure,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
    RefusedCallbackTally,
)

G = Generation.State
R = ImageRequest.Status
REQUEST_WORK = [R.GENERATING, R.IN_REVIEW]
GENERATION_WORK = [G.QUEUED, G.SUBMITTING, G.SUBMITTED, G.SUCCEEDED]
SAMPLE = 2000
PERIODS = {"today": 0, "7d": 7, "30d": 30}
# A custom period spans at most a year: its charts draw a bar a day.
MAX_CUSTOM = timedelta(days=366)
# Failure codes we set ourselves; every other code is the provider's. A failed store is
# told apart by its message: a refused URL, a download that broke, or a file that is no image.
OWN_CAUSES = {
    "download_refused": "Result URL refused (unsafe, unknown host, or an HTTP error)",
    "download_failed": "Result download broke off or timed out",
    "decode_failed": "Result was not a readable image",
    "timeout": "Timed out waiting for the provider",
    "cancelled": "Cancelled by an admin",
}
STORE = Q(failure_code="store")
CAUSE = Case(
    When(STORE & Q(failure_message__contains="image"), then=Value("decode_failed")),
    When(
        STORE
        & (
            Q(failure_message__contains="URL")
            | Q(failure_message__contains="host")
            | Q(failure_message__contains="address")
        ),
        then=Value("download_refused"),
    ),
    When(STORE, then=Value("download_failed")),
    default=F("failure_code"),
)


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime
    key: str = "custom"

    @property
    def days(self) -> list:
        first = timezone.localtime(self.start).date()
        last = timezone.localtime(self.end - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def period_for(
    key: str, *, start: datetime | None = None, end: datetime | None = None, now=None
) -> Period:
    """The period named `key` ("today", "7d", "30d"), or [start, end) for "custom"."""
    now = now or timezone.now()
    if key == "custom" and start and end and start < end:
        return Period(max(start, end - MAX_CUSTOM), end, "custom")
    key = key if key in PERIODS else "7d"
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(midnight - timedelta(days=max(PERIODS[key] - 1, 0)), now, key)


def per_day(
    rows: QuerySet,
    column: str,
    period: Period,
    groups: Sequence[str] = (),
    value: Aggregate | None = None,
) -> list[tuple]:
    """(day, *groups, value) of `rows` per local day of `column` in the period, days with none
    left out; the value counts rows unless another aggregate is given.

    The day is found by comparing the column with each day's start in the database (a CASE
    over the period's days), instead of casting every row to a date, which costs a function
    call per row on SQLite.
    """
    days = period.days
    starts = [start_of_day(day) for day in days[1:]]
    bucket = Case(
        *(When(**{f"{column}__lt": start}, then=Value(n)) for n, start in enumerate(starts)),
        default=Value(len(starts)),
    )
    found = (
        rows.filter(**{f"{column}__gte": period.start, f"{column}__lt": period.end})
        .annotate(bucket=bucket)
        .values_list("bucket", *groups)
        .annotate(value=value or Count("id"))
        .order_by("bucket", *groups)
    )
    return [(days[n], *rest) for n, *rest in found if rest[-1]]


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of `values` (share in 0-1), None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Volume:
    requests: int
    generations: int
    # (day, mode, resolution, count)
    requests_by_day: list[tuple] = field(default_factory=list)
    generations_by_day: list[tuple] = field(default_factory=list)
    # state -> (count, oldest last change) of the work under way now, whatever its age
    request_states: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    generation_states: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)


def volume(period: Period) -> Volume:
    """Requests and generations made in the period per day, and all work in each state now."""
    # Requests come from the daily figures, which count them per day of creation.
    days = period.days
    requests = (
        DailyFigure.objects.filter(figure="requests", day__gte=days[0], day__lte=days[-1])
        .values_list("day", "mode", "resolution")
        .annotate(n=Sum("count"))
        .order_by("day", "mode", "resolution")
    )
    generations = per_day(
        Generation.objects.all(), "queued_at", period, ("request__mode", "request__resolution")
    )
    # Work under way now, from the (state, last change) indexes: final states are history,
    # and counting all of it would grow with every request ever made.
    request_states = _states(ImageRequest.objects, "status", REQUEST_WORK)
    generation_states = _states(Generation.objects.all(), "state", GENERATION_WORK)
    requests, generations = list(requests), list(generations)
    return Volume(
        requests=sum(row[3] for row in requests),
        generations=sum(row[3] for row in generations),
        requests_by_day=requests,
        generations_by_day=generations,
        request_states={s: request_states.get(s, (0, None)) for s in REQUEST_WORK},
        generation_states={s: generation_states.get(s, (0, None)) for s in GENERATION_WORK},
    )


def _states(rows: QuerySet, column: str, working: list[str]) -> dict[str, tuple]:
    """{state: (count, oldest last change)} of the working states."""
    found = (
        rows.filter(**{f"{column}__in": working})
        .values_list(column)
        .annotate(n=Count("id"), oldest=Min("updated_at"))
        .order_by()
    )
    return {state: (n, oldest) for state, n, oldest in found}


@dataclass
class StuckWork:
    # state -> count of generations past their expected time in it
    generation_counts: dict[str, int]
    generations: list[Generation]
    requests_in_review: int
    oldest_requests: list[ImageRequest]
    review_limit: timedelta


def stuck_limits() -> dict[str, timedelta]:
    """How long a generation may sit in each working state before it counts as stuck."""
    return {
        G.QUEUED: timedelta(seconds=settings.OPS_STUCK_QUEUED),
        G.SUBMITTING: timedelta(seconds=settings.OPS_STUCK_SUBMITTING),
        G.SUBMITTED: timedelta(seconds=settings.OPS_STUCK_SUBMITTED),
        G.SUCCEEDED: timedelta(seconds=settings.OPS_STUCK_SUCCEEDED),
    }


def stuck_filter(now: datetime) -> Q:
    """Generations past their expected time in a working state.

    Time in state is measured from the column that state sets: submitted_at for submitted,
    completed_at for succeeded-not-stored, the last change for queued and submitting.
    """
    limits = stuck_limits()
    # The leading state filter lets the planner read the state index, not the whole table.
    return Q(state__in=list(limits)) & (
        Q(state=G.QUEUED, updated_at__lt=now - limits[G.QUEUED])
        | Q(state=G.SUBMITTING, updated_at__lt=now - limits[G.SUBMITTING])
        | Q(state=G.SUBMITTED, submitted_at__lt=now - limits[G.SUBMITTED])
        | Q(state=G.SUCCEEDED, completed_at__lt=now - limits[G.SUCCEEDED])
    )


def stuck_work(*, now: datetime | None = None, limit: int = 25) -> StuckWork:
    """Work stuck now (not tied to the period): counts, and the oldest items to act on."""
    now = now or timezone.now()
    stuck = Generation.objects.filter(stuck_filter(now))
    counts = dict(stuck.values_list("state").annotate(n=Count("id")).order_by())
    # Ordered here, not in the query: sorting by the last change there walks that index over
    # every generation ever made, while the state index finds the stuck ones directly.
    oldest = sorted(stuck.values_list("updated_at", "pk").order_by())[:limit]
    review_limit = timedelta(hours=settings.OPS_STUCK_REVIEW_HOURS)
    # A request enters review when its last generation is stored: its last change until
    # someone decides, so updated_at is the time it has waited.
    waiting = ImageRequest.objects.filter(status=R.IN_REVIEW, updated_at__lt=now - review_limit)
    return StuckWork(
        generation_counts={state: counts.get(state, 0) for state in stuck_limits()},
        generations=list(
            Generation.objects.select_related("request")
            .filter(pk__in=[pk for _, pk in oldest])
            .order_by("updated_at", "id")
        ),
        requests_in_review=waiting.count(),
        oldest_requests=list(waiting.order_by("updated_at", "id")[:limit]),
        review_limit=review_limit,
    )


@dataclass
class Failures:
    failed: int
    # code -> count
    provider_codes: dict[str, int]
    own_causes: dict[str, int]
    # (day, code, count)
    by_day: list[tuple]
    asked: int
    creates: int
    retries: int
    duplicates: int
    submit_attempts: int
    # Creates sent back to the queue to wait: after any retryable error, after a 429
    backoffs: int = 0
    rate_limited: int = 0
    # Creates held back by a halt of the account, by the code that halted it
    halts: dict[str, int] = field(default_factory=dict)

    @property
    def own_cause_rows(self) -> list[tuple[str, str, int]]:
        return [(cause, OWN_CAUSES[cause], n) for cause, n in self.own_causes.items()]

    @property
    def retry_rate(self) -> float | None:
        """Provider tasks created per generation asked for: 1.0 when nothing was redone."""
        return self.creates / self.asked if self.asked else None


def failures(period: Period) -> Failures:
    """Failures by code and cause, and how much work was created again, in the period."""
    failed = Generation.objects.filter(
        state__in=[G.FAILED, G.TIMED_OUT], updated_at__gte=period.start, updated_at__lt=period.end
    )
    by_code = dict(
        failed.annotate(cause=CAUSE).values_list("cause").annotate(n=Count("id")).order_by()
    )
    by_day = per_day(failed, "updated_at", period, ("failure_code",))
    made = Generation.objects.filter(queued_at__gte=period.start, queued_at__lt=period.end)
    totals = made.aggregate(
        asked=Count("id", filter=Q(retry_of=None, duplicate_of=None)),
        creates=Count("id", filter=Q(provider_task_id__isnull=False)),
        retries=Count("id", filter=~Q(retry_of=None)),
        duplicates=Count("id", filter=~Q(duplicate_of=None)),
        attempts=Sum("attempts"),
    )
    # A create that failed and will be tried again moves back to queued with a note that
    # starts with the action and the code ("retry: 429 ...", "halt: 402 ...").
    requeued = Event.objects.filter(
        subject="generation",
        from_state=G.SUBMITTING,
        to_state=G.QUEUED,
        created_at__gte=period.start,
        created_at__lt=period.end,
    )
    waits = requeued.aggregate(
        backoffs=Count("id", filter=Q(note__startswith="retry: ")),
        rate_limited=Count("id", filter=Q(note__startswith="retry: 429 ")),
    )
    halts = dict(
        requeued.filter(note__startswith="halt: ")
        .annotate(code=Substr("note", 7, 3))
        .values_list("code")
        .annotate(n=Count("id"))
        .order_by()
    )
    return Failures(
        failed=sum(by_code.values()),
        provider_codes={c: n for c, n in by_code.items() if c not in OWN_CAUSES},
        own_causes={c: n for c, n in by_code.items() if c in OWN_CAUSES},
        by_day=by_day,
        asked=totals["asked"],
        creates=totals["creates"],
        retries=totals["retries"],
        duplicates=totals["duplicates"],
        submit_attempts=totals["attempts"] or 0,
        backoffs=waits["backoffs"],
        rate_limited=waits["rate_limited"],
        halts=halts,
    )


@dataclass
class Callbacks:
    completed: int
    by_callback: int
    # Completed by polling: no authentic callback had come when the task was found final.
    missed: int
    refused: dict[str, int]
    received: int
    duplicates: int
    delay_p50: float | None
    delay_p95: float | None

    @property
    def callback_share(self) -> float | None:
        return self.by_callback / self.completed if self.completed else None


def callbacks(period: Period) -> Callbacks:
    """How generations completed in the period learned of it, and how callbacks fared.

    A generation completed by callback has an accepted receipt for its task received no
    later than its completion (the callback woke the refresh that found it final); without
    one, polling found it, and its callback was missed (late or never sent).
    """
    accepted = CallbackReceipt.objects.filter(outcome=CallbackReceipt.Outcome.ACCEPTED)
    woke = accepted.filter(
        task_id=OuterRef("provider_task_id"), received_at__lte=OuterRef("completed_at")
    )
    completed = Generation.objects.filter(
        completed_at__gte=period.start, completed_at__lt=period.end, provider_task_id__isnull=False
    ).aggregate(total=Count("id"), by_callback=Count("id", filter=Q(Exists(woke))))
    receipts = CallbackReceipt.objects.filter(
        received_at__gte=period.start, received_at__lt=period.end
    )
    refused = dict(
        receipts.exclude(outcome=CallbackReceipt.Outcome.ACCEPTED)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    # Past the few kept in full per window, refused callbacks are only counted.
    for outcome, n in (
        RefusedCallbackTally.objects.filter(
            window_start__gte=period.start, window_start__lt=period.end
        )
        .values_list("outcome")
        .annotate(n=Sum("count"))
        .order_by()
    ):
        refused[outcome] = refused.get(outcome, 0) + n
    counted = receipts.filter(outcome=CallbackReceipt.Outcome.ACCEPTED).aggregate(
        n=Count("id"), tasks=Count("task_id", distinct=True)
    )
    sample = receipts.filter(outcome=CallbackReceipt.Outcome.ACCEPTED).order_by("-received_at")
    delays = [
        delay
        for body, received in sample.values_list("body", "received_at")[:SAMPLE]
        if (delay := _callback_delay(body, received)) is not None
    ]
    return Callbacks(
        completed=completed["total"],
        by_callback=completed["by_callback"],
        missed=completed["total"] - completed["by_callback"],
        refused=refused,
        received=counted["n"],
        duplicates=counted["n"] - counted["tasks"],
        delay_p50=percentile(delays, 0.5),
        delay_p95=percentile(delays, 0.95),
    )


def _callback_delay(body: str, received: datetime) -> float | None:
    """Seconds from the provider's completeTime (Unix ms) in a callback body to its receipt."""
    try:
        complete = int((json.loads(body).get("data") or {}).get("completeTime"))
    except (ValueError, TypeError, AttributeError):
        return None
    completed = datetime.fromtimestamp(complete / 1000, tz=UTC)
    return max(0.0, (received - completed).total_seconds())


def latency_by_day(period: Period) -> list[tuple]:
    """(day, p50 seconds, count) of submitted to completed, over a bounded sample."""
    rows = (
        Generation.objects.filter(
            completed_at__gte=period.start,
            completed_at__lt=period.end,
            submitted_at__isnull=False,
        )
        .order_by("-completed_at")
        .values_list("submitted_at", "completed_at")[:SAMPLE]
    )
    by_day: dict = defaultdict(list)
    for submitted, completed in rows:
        by_day[timezone.localtime(completed).date()].append((completed - submitted).total_seconds())
    return [(day, percentile(by_day[day], 0.5), len(by_day[day])) for day in sorted(by_day)]


@dataclass
class CircuitOpening:
    """One halt of the provider account, from its opening to its closing (None: still open)."""

    opened_at: datetime
    code: str
    reason: str
    closed_at: datetime | None
    # The admin who resumed submissions, or "" when the cluster closed it (a credit check).
    closed_by: str
    close_note: str
    duration: timedelta


@dataclass
class CircuitOpenings:
    openings: list[CircuitOpening]
    # Time the account stood halted within the period (up to now for a period still running).
    halted: timedelta

    @property
    def count(self) -> int:
        return len(self.openings)


def circuit_openings(period: Period, *, now: datetime | None = None) -> CircuitOpenings:
    """The halts of the provider account that overlap the period, oldest first.

    They are read from the account's audit events ("open" -> "halted" with the note
    "<code>: <reason>", "halted" -> "open" with why): the last one before the period says
    whether it began halted, and the first one after it closes a halt still open at its end.
    """
    now = now or timezone.now()
    if not ProviderAccount.objects.filter(circuit_opened_at__isnull=False).exists():
        # Never halted (an opening leaves its time on the account): spare the event scans.
        return CircuitOpenings([], timedelta())
    account = Event.objects.filter(subject="account").select_related("actor")
    before = account.filter(created_at__lt=period.start).order_by("-created_at", "-id").first()
    events = list(
        account.filter(created_at__gte=period.start, created_at__lt=period.end).order_by(
            "created_at", "id"
        )
    )
    if before is not None and before.to_state == "halted":
        events.insert(0, before)
    if events and events[-1].to_state == "halted":
        after = account.filter(created_at__gte=period.end).order_by("created_at", "id").first()
        if after is not None:
            events.append(after)
    openings: list[CircuitOpening] = []
    for event in events:
        if event.to_state == "halted":
            code, _, reason = event.note.partition(": ")
            openings.append(
                CircuitOpening(event.created_at, code, reason, None, "", "", now - event.created_at)
            )
        elif openings and openings[-1].closed_at is None:
            opening = openings[-1]
            opening.closed_at = event.created_at
            opening.closed_by = event.actor.get_username() if event.actor else ""
            opening.close_note = event.note
            opening.duration = event.created_at - opening.opened_at
    until = min(period.end, now)
    halted = sum(
        (
            max(min(o.closed_at or until, until) - max(o.opened_at, period.start), timedelta())
            for o in openings
        ),
        timedelta(),
    )
    return CircuitOpenings(openings, halted)
