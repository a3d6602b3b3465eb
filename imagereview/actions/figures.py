"""The daily figures: what each day's requests cost and where review left their outputs.

The dashboard's cost and review figures count by cohort, the requests created in a period
with all the work they caused. Counting a cohort means reading every output of it, so the
counts are rolled up per day of request creation (and mode, resolution, requester) into
`DailyFigure` rows, and a period's figures are sums of its days' rows.

`refresh` keeps the rows equal to a recount: it finds the days whose requests changed since
its last run (a request made, a generation changed, a decision made or undone) and counts
those days again from the source rows. The run holds the watermark row's lock, so two runs
never interleave. A change is seen by its timestamp; a transaction that commits after the
run began is caught by the next run, because each run looks `OVERLAP` further back than
where the previous one started.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from imagereview.models import (
    Asset,
    DailyFigure,
    Decision,
    FigureWatermark,
    Generation,
    ImageRequest,
)
from imagereview.verdicts import decider, standings

log = logging.getLogger(__name__)

V = Decision.Verdict
ZERO = Decimal(0)
# How far before the previous run's start a run looks for changes: longer than any
# transaction that writes requests, generations or decisions stays open.
OVERLAP = timedelta(minutes=2)
# Days counted per pass of a rebuild, to bound the rows held in memory.
DAYS_PER_PASS = 7
# Keys per IN (...) list, well under every database's limit on parameters.
IDS_PER_QUERY = 5000

# (day, mode, resolution, requester_id)
Cell = tuple[date, str, str, int]
# (figure, label)
Line = tuple[str, str]


def day_of(moment: datetime) -> date:
    """The local day a moment falls on: the days the dashboard shows."""
    return timezone.localtime(moment).date()


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def refresh(*, full: bool = False) -> int:
    """Count again the days touched since the last run (all days when `full`, on the first
    run, or when the time zone changed). Return how many days were counted."""
    zone = timezone.get_current_timezone_name()
    FigureWatermark.objects.get_or_create(name="daily")
    with transaction.atomic():
        mark = FigureWatermark.objects.select_for_update().get(name="daily")
        started = timezone.now()
        rebuild = full or mark.refreshed_at is None or mark.time_zone != zone
        days = all_days() if rebuild else touched_days(mark.refreshed_at - OVERLAP)
        if not days and not rebuild:
            return 0
        if rebuild:
            DailyFigure.objects.all().delete()
        ordered = sorted(days)
        for offset in range(0, len(ordered), DAYS_PER_PASS):
            part = ordered[offset : offset + DAYS_PER_PASS]
            if not rebuild:
                DailyFigure.objects.filter(day__in=part).delete()
            DailyFigure.objects.bulk_create(recount(part), batch_size=1000)
        mark.refreshed_at = started
        mark.time_zone = zone
        mark.save(update_fields=["refreshed_at", "time_zone"])
    log.info("daily figures: %s days counted%s", len(days), " (rebuilt)" if rebuild else "")
    return len(days)


def all_days() -> set[date]:
    span = ImageRequest.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
    if span["first"] is None:
        return set()
    first, last = day_of(span["first"]), day_of(span["last"])
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


def touched_days(since: datetime) -> set[date]:
    """The creation days of the requests whose counted facts changed at or after `since`."""
    days = {
        day_of(moment)
        for (moment,) in ImageRequest.objects.filter(created_at__gte=since)
        .order_by()
        .values_list("created_at")
    }
    # Each change is found on its own timestamp index, then its request looked up by key:
    # joined and OR-ed in one query, the planner walks a whole table instead.
    decided = [
        Decision.objects.filter(created_at__gte=since).values_list("output_id"),
        Decision.objects.filter(undone_at__gte=since).values_list("output_id"),
    ]
    outputs = sorted({pk for rows in decided for (pk,) in rows.order_by()})
    ids = {
        pk
        for (pk,) in Generation.objects.filter(updated_at__gte=since)
        .order_by()
        .values_list("request_id")
    }
    for part in _chunks(outputs):
        ids |= set(Asset.objects.filter(pk__in=part).values_list("request_id", flat=True))
    for part in _chunks(sorted(ids)):
        made = ImageRequest.objects.filter(pk__in=part).order_by().values_list("created_at")
        days |= {day_of(moment) for (moment,) in made}
    return days


def recount(days: Iterable[date]) -> list[DailyFigure]:
    """The figures of the requests created on `days`, counted from the source rows."""
    days = sorted(set(days))
    if not days:
        return []
    rows = ImageRequest.objects.filter(_created_on(days)).values_list(
        "pk", "created_at", "mode", "resolution", "requester_id", "required_approvals"
    )
    requests = {
        pk: ((day_of(created), mode, resolution, requester), required)
        for pk, created, mode, resolution, requester, required in rows
    }
    counts: dict[Cell, dict[Line, list]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0, ZERO, ZERO])
    )
    for cell, _ in requests.values():
        counts[cell][("requests", "")][0] += 1
    # Everything else is fetched by key, chunk by chunk: a join filtered on the requests'
    # creation time leaves the join order to the planner, which may walk a whole table.
    for part in _chunks(list(requests)):
        _count_spend(counts, requests, part)
        _count_outputs(counts, requests, part)
    return [
        DailyFigure(
            day=cell[0],
            mode=cell[1],
            resolution=cell[2],
            requester_id=cell[3],
            figure=figure,
            label=label[:120],
            count=count,
            failed=failed,
            credits=credits,
            estimated=estimated,
        )
        for cell, lines in counts.items()
        for (figure, label), (count, failed, credits, estimated) in lines.items()
    ]


def _created_on(days: list[date]) -> Q:
    """The requests created on `days`."""
    cohort = Q()
    for day in days:
        cohort |= Q(created_at__gte=start_of(day), created_at__lt=start_of(day + timedelta(days=1)))
    return cohort


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for offset in range(0, len(ids), IDS_PER_QUERY):
        yield ids[offset : offset + IDS_PER_QUERY]


def _count_spend(counts: dict, requests: dict, request_ids: list[int]) -> None:
    """Every credit the cohort's generations cost: failed, retried and duplicate work too."""
    for request_id, credits, estimated in Generation.objects.filter(
        request_id__in=request_ids, credits__isnull=False
    ).values_list("request_id", "credits", "credits_estimated"):
        line = counts[requests[request_id][0]][("spend", "")]
        line[2] += credits
        if estimated:
            line[3] += credits


def _count_outputs(counts: dict, requests: dict, request_ids: list[int]) -> None:
    """Where review left each output, what the lost ones cost, which checks failed, and how
    many decisions were undone."""
    outputs = list(
        Asset.objects.filter(request_id__in=request_ids, kind=Asset.Kind.OUTPUT).values_list(
            "pk", "request_id", "generation_id", "generation__credits", "checks"
        )
    )
    per_generation: dict[int, int] = defaultdict(int)
    for _, _, generation_id, _, _ in outputs:
        per_generation[generation_id] += 1
    request_of = {pk: request_id for pk, request_id, *_ in outputs}
    decisions = (
        Decision.objects.filter(output_id__in=list(request_of))
        .order_by("created_at", "id")
        .values_list(
            "output_id",
            "reviewer_id",
            "guest_link_id",
            "guest_name",
            "verdict",
            "reason",
            "undone_at",
        )
    )
    counting = []
    for output_id, reviewer_id, link_id, name, verdict, reason, undone_at in decisions:
        if undone_at is None:
            counting.append((output_id, decider(reviewer_id, link_id, name), verdict, reason))
        else:
            counts[requests[request_of[output_id]][0]][("undone", "")][0] += 1
    tallies = standings((output, reviewer, verdict) for output, reviewer, verdict, _ in counting)
    last_reason = {(output, verdict): reason for output, _, verdict, reason in counting}
    for pk, request_id, generation_id, credits, checks in outputs:
        cell, required = requests[request_id]
        lines = counts[cell]
        for check in checks or []:
            line = lines[("check", check.get("name", ""))]
            line[0] += 1
            line[1] += 0 if check.get("passed") else 1
        tally = tallies.get(pk)
        if tally is not None and tally.approved(required):
            lines[("verdict", V.APPROVE)][0] += 1
        elif tally is not None and tally.verdict in (V.REJECT, V.CHANGES):
            lines[("verdict", tally.verdict)][0] += 1
            reason = last_reason.get((pk, tally.verdict), "")
            loss = lines[("loss", f"{tally.verdict}:{reason}")]
            loss[0] += 1
            loss[2] += (credits or ZERO) / per_generation[generation_id]
