"""Server time of the operations dashboard on 100 000 requests with 300 000 outputs and
1 000 000 audit events, next to the same page on 100 requests, measured in one run.

The large history spreads over a year; the small one is the last days of it, so the
periods shown (7 and 30 days) hold a year's daily load at scale.
"""

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from imagereview.actions import figures
from imagereview.models import (
    Asset,
    CallbackReceipt,
    DailyFigure,
    Decision,
    Event,
    Generation,
    ImageRequest,
)
from imagereview.queries import operations, spending
from tests.benchmarks.support import print_table
from tests.conftest import client_for, make_user

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

ROUNDS = 30
DAYS = 365
G = Generation.State
R = ImageRequest.Status
STAMPED = {
    ImageRequest: "created_at",
    Generation: "queued_at",
    Asset: "created_at",
    Decision: "created_at",
    Event: "created_at",
    CallbackReceipt: "received_at",
}
CHANGED = {ImageRequest: "updated_at", Generation: "updated_at"}


@contextlib.contextmanager
def own_timestamps() -> Iterator[None]:
    """Let bulk_create keep the times it is given instead of stamping now."""
    added = [model._meta.get_field(name) for model, name in STAMPED.items()]
    changed = [model._meta.get_field(name) for model, name in CHANGED.items()]
    for field in added:
        field.auto_now_add = False
    for field in changed:
        field.auto_now = False
    try:
        yield
    finally:
        for field in added:
            field.auto_now_add = True
        for field in changed:
            field.auto_now = True


def made_at(number: int, spread: int, now: datetime) -> datetime:
    """When request `number` was made: evenly over the last `spread` days."""
    return now - timedelta(days=spread * (number % 997) / 997, minutes=5)


def fill(requester, reviewer, count: int, *, start: int, spread: int, now: datetime) -> None:
    """`count` requests spread over the last `spread` days, each with three generations and
    outputs, three events per generation and one for the request, a callback per
    generation, and a decision on two of every three outputs."""
    batch = 2000
    with own_timestamps():
        for offset in range(0, count, batch):
            size = min(batch, count - offset)
            numbers = range(start + offset, start + offset + size)
            with transaction.atomic():
                requests = ImageRequest.objects.bulk_create(
                    ImageRequest(
                        requester=requester,
                        prompt=f"benchmark prompt {n}",
                        variants=3,
                        status=R.IN_REVIEW if n % 4 else R.APPROVED,
                        created_at=made_at(n, spread, now),
                        updated_at=made_at(n, spread, now) + timedelta(seconds=70),
                    )
                    for n in numbers
                )
                generations = Generation.objects.bulk_create(
                    Generation(
                        request=r,
                        variant=v,
                        state=G.STORED if (r.pk + v) % 40 else G.FAILED,
                        failure_code="" if (r.pk + v) % 40 else "500",
                        provider_task_id=f"task-{r.pk}-{v}",
                        attempts=1,
                        credits=Decimal("4.00"),
                        queued_at=r.created_at,
                        submitted_at=r.created_at + timedelta(seconds=5),
                        completed_at=r.created_at + timedelta(seconds=60 + v),
                        stored_at=r.created_at + timedelta(seconds=62 + v),
                        updated_at=r.created_at + timedelta(seconds=62 + v),
                    )
                    for r in requests
                    for v in (1, 2, 3)
                )
                outputs = Asset.objects.bulk_create(
                    Asset(
                        kind=Asset.Kind.OUTPUT,
                        request_id=g.request_id,
                        generation=g,
                        file="outputs/x.png",
                        sha256="0" * 64,
                        bytes=1,
                        width=1024,
                        height=1024,
                        content_type="image/png",
                        checks=[{"name": "size", "passed": g.pk % 9 != 0, "detail": ""}],
                        created_at=g.completed_at,
                    )
                    for g in generations
                )
                Decision.objects.bulk_create(
                    Decision(
                        output=o,
                        reviewer=reviewer,
                        verdict=Decision.Verdict.APPROVE if o.pk % 5 else Decision.Verdict.REJECT,
                        reason="" if o.pk % 5 else Decision.Reason.ARTEFACTS,
                        created_at=o.created_at + timedelta(minutes=30),
                    )
                    for o in outputs
                    if o.pk % 3
                )
                CallbackReceipt.objects.bulk_create(
                    CallbackReceipt(
                        generation=g,
                        task_id=g.provider_task_id,
                        outcome=CallbackReceipt.Outcome.ACCEPTED,
                        verified=True,
                        body=json.dumps(
                            {"data": {"completeTime": int(g.completed_at.timestamp() * 1000)}}
                        ),
                        received_at=g.completed_at - timedelta(seconds=1),
                    )
                    for g in generations
                )
                Event.objects.bulk_create(
                    event
                    for g in generations
                    for event in (
                        Event(
                            generation=g,
                            request_id=g.request_id,
                            subject="generation",
                            from_state=G.QUEUED,
                            to_state=G.SUBMITTING,
                            source="worker",
                            created_at=g.queued_at,
                        ),
                        Event(
                            generation=g,
                            request_id=g.request_id,
                            subject="generation",
                            from_state=G.SUBMITTING,
                            to_state=G.SUBMITTED,
                            source="worker",
                            created_at=g.submitted_at,
                        ),
                        Event(
                            generation=g,
                            request_id=g.request_id,
                            subject="generation",
                            from_state=G.SUBMITTED,
                            to_state=g.state,
                            source="callback",
                            created_at=g.completed_at,
                        ),
                    )
                )
                Event.objects.bulk_create(
                    Event(
                        request=r,
                        subject="request",
                        from_state=R.GENERATING,
                        to_state=R.IN_REVIEW,
                        source="worker",
                        created_at=r.created_at + timedelta(seconds=70),
                    )
                    for r in requests
                )


def timings(client, url: str) -> tuple[float, float, int]:
    """p50 and p95 milliseconds of `url`, and the queries one view of it runs."""
    queries = []

    def count(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert client.get(url).status_code == 200  # also warms caches and connections
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], len(queries)


def measure(client) -> dict[str, tuple[float, float, int]]:
    page = reverse("operations")
    return {
        "dashboard, 7 days": timings(client, f"{page}?period=7d"),
        "dashboard, 30 days": timings(client, f"{page}?period=30d"),
    }


def figure_times(key: str) -> list[tuple[str, str]]:
    """Milliseconds each figure of the page takes on its own, to tell where time goes."""
    period = operations.period_for(key)
    parts = {
        "daily figures refresh, nothing touched": figures.refresh,
        "volume": lambda: operations.volume(period),
        "stuck work": operations.stuck_work,
        "failures": lambda: operations.failures(period),
        "callbacks": lambda: operations.callbacks(period),
        "latency": lambda: operations.latency_by_day(period),
        "cost": lambda: spending.cost(period),
        "review": lambda: spending.review(period),
    }
    rows = []
    for name, part in parts.items():
        started = time.perf_counter()
        part()
        rows.append((f"{key} {name}", f"{(time.perf_counter() - started) * 1000:.1f}"))
    return rows


def test_dashboard_at_100_and_100_000_requests(requester, reviewer):
    admin = make_user("ada", superuser=True)
    client = client_for(admin)
    now = timezone.now()
    # The small history: the last 30 days of the large one at a thousandth of its load.
    fill(requester, reviewer, 100, start=0, spread=30, now=now)
    # The rows carry their own timestamps, out of the watermark's sight: count them in full,
    # as a deployment does once when the figures are introduced.
    figures.refresh(full=True)
    small = measure(client)

    started = time.perf_counter()
    fill(requester, reviewer, 100_000 - 100, start=100, spread=DAYS, now=now)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    figures.refresh(full=True)
    rebuild_seconds = time.perf_counter() - started
    assert ImageRequest.objects.count() == 100_000
    assert Asset.objects.count() == 300_000
    assert Event.objects.count() == 1_000_000
    large = measure(client)

    rows = []
    for page, (p50, p95, queries) in small.items():
        big50, big95, big_queries = large[page]
        rows.append(
            (
                page,
                f"{p50:.1f}",
                f"{p95:.1f}",
                queries,
                f"{big50:.1f}",
                f"{big95:.1f}",
                big_queries,
                f"{big50 / p50:.2f}x",
            )
        )
    print_table(
        f"{connection.vendor}: dashboard, filled 100 000 requests / 300 000 outputs / "
        f"{Event.objects.count()} events in {fill_seconds:.0f} s; daily figures of "
        f"{DailyFigure.objects.values('day').distinct().count()} days counted in full in "
        f"{rebuild_seconds:.1f} s",
        rows,
        headers=("100 p50", "p95", "queries", "100k p50", "p95", "queries", "ratio p50"),
    )
    print_table(
        "milliseconds per figure at 100 000 requests", figure_times("7d") + figure_times("30d")
    )
    for page, (_, _, queries) in small.items():
        assert large[page][2] == queries, page
