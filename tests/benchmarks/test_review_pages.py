"""Server time of the queue and review pages on 100 000 requests with 300 000 outputs,
next to the same pages on 100 requests, measured in one run on the database the settings
name (SQLite by default; PostgreSQL with DATABASE_URL)."""

import os
import sqlite3
import statistics
import time

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet
from django.urls import reverse

from imagereview.models import Asset, Generation, ImageRequest
from imagereview.queries.pages import beyond
from imagereview.views.review import PAGE_SIZE, queue_cursor
from tests.conftest import client_for

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

ROUNDS = 40


def fill(requester, count: int, *, start: int = 0) -> None:
    """`count` requests in review, each with three stored outputs (no files: rows only)."""
    batch = 2000
    for offset in range(0, count, batch):
        size = min(batch, count - offset)
        with transaction.atomic():
            requests = ImageRequest.objects.bulk_create(
                ImageRequest(
                    requester=requester,
                    prompt=f"benchmark prompt {start + offset + n}",
                    variants=3,
                    status=ImageRequest.Status.IN_REVIEW,
                )
                for n in range(size)
            )
            generations = Generation.objects.bulk_create(
                Generation(request=r, variant=v, state=Generation.State.STORED)
                for r in requests
                for v in (1, 2, 3)
            )
            Asset.objects.bulk_create(
                Asset(
                    kind=Asset.Kind.OUTPUT,
                    request_id=g.request_id,
                    generation=g,
                    file="outputs/x.png",
                    thumbnail="outputs/x.jpg",
                    sha256="0" * 64,
                    bytes=1,
                    width=1024,
                    height=1024,
                    content_type="image/png",
                    flagged=g.pk % 50 == 0,
                )
                for g in generations
            )
            # As storing a flagged output does, mark its request for the queue's filter.
            flagged = {g.request_id for g in generations if g.pk % 50 == 0}
            ImageRequest.objects.filter(pk__in=flagged).update(flagged=True)


def database() -> str:
    """Which database the run measured: the engine and its version."""
    if connection.vendor == "postgresql":
        number = connection.pg_version
        return f"PostgreSQL {number // 10000}.{number % 10000}"
    return f"SQLite {sqlite3.sqlite_version}"


def timings(client, url: str) -> tuple[float, float, float]:
    """The median, 95th percentile and fastest time of the page, in ms.

    On a shared machine the median moves with the load; the fastest of the rounds is the
    one least disturbed, so its ratio is printed beside the median's.
    """
    client.get(url)  # warm caches and connections
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], samples[0]


def flagged_in_review() -> QuerySet[ImageRequest]:
    """The requests in review with a flagged output, last first (found through the outputs,
    not the request's own flag, so that the pages compared are picked the same way)."""
    return (
        ImageRequest.objects.filter(status=ImageRequest.Status.IN_REVIEW, assets__flagged=True)
        .distinct()
        .order_by("-created_at", "-id")
    )


def last_flagged_cursor(count: int) -> str:
    """The cursor of the flagged filter's page that shows the last `count` flagged requests.

    The small set holds too few flagged requests to fill a page, and a full page costs more
    to render than one of a few rows whatever the table: this page is as long at both sizes.
    """
    first = list(flagged_in_review()[:count])[-1]
    before = (
        ImageRequest.objects.filter(status=ImageRequest.Status.IN_REVIEW)
        .filter(beyond((first.created_at, first.pk), ascending=False))
        .order_by("-created_at", "-id")
        .first()
    )
    return queue_cursor(before) if before else ""


def measure(
    client, image_request_id: int, flagged_rows: int
) -> dict[str, tuple[float, float, float]]:
    """The pages, the deep ones at `image_request_id` (a queue page starts just past it)."""
    queue = reverse("review_queue")
    deep = queue_cursor(ImageRequest.objects.get(pk=image_request_id))
    last_flagged = last_flagged_cursor(flagged_rows)
    return {
        "queue, first page": timings(client, queue),
        "queue, deep page": timings(client, f"{queue}?after={deep}"),
        "queue, flagged filter": timings(client, queue + "?flagged=on"),
        f"queue, flagged, last {flagged_rows}": timings(
            client, f"{queue}?flagged=on&after={last_flagged}"
        ),
        "queue, newest first": timings(client, queue + "?sort=newest"),
        "review page": timings(client, reverse("review_detail", args=[image_request_id])),
    }


def test_queue_and_review_pages_at_100_and_100_000_requests(requester, reviewer):
    client = client_for(reviewer)
    fill(requester, 100)
    middle = ImageRequest.objects.order_by("id")[50].pk
    flagged_rows = min(flagged_in_review().count(), PAGE_SIZE)
    small = measure(client, middle, flagged_rows)
    small_load = os.getloadavg()[0]

    started = time.perf_counter()
    fill(requester, 100_000 - 100, start=100)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    assert ImageRequest.objects.count() == 100_000
    assert Asset.objects.count() == 300_000
    deep = ImageRequest.objects.order_by("id")[60_000].pk
    large = measure(client, deep, flagged_rows)
    large_load = os.getloadavg()[0]

    print(
        f"\nreview pages on {database()}: filled 100 000 requests / 300 000 outputs in "
        f"{fill_seconds:.0f} s; the machine's load average was {small_load:.1f} while the "
        f"small set was measured, {large_load:.1f} while the large one was"
    )
    print(
        f"{'page':<24}{'100 req p50':>12}{'p95':>8}{'min':>8}{'100k p50':>11}{'p95':>8}"
        f"{'min':>8}{'ratio p50':>11}{'min':>7}"
    )
    for page, (p50, p95, fastest) in small.items():
        big50, big95, big_fastest = large[page]
        figures = (
            f"{p50:>10.1f}ms{p95:>6.1f}ms{fastest:>6.1f}ms"
            f"{big50:>9.1f}ms{big95:>6.1f}ms{big_fastest:>6.1f}ms"
        )
        print(f"{page:<24}{figures}{big50 / p50:>10.2f}x{big_fastest / fastest:>6.2f}x")
    # The pages are keyset-paged, indexed and count no further than a bound: a thousandfold
    # more data must not cost double. The flagged filter's first page is left out: it holds
    # a few rows on the small set and a full page on the large one; the page of its last rows
    # is the same length at both sizes.
    for page, (p50, _, _) in small.items():
        if page != "queue, flagged filter":
            assert large[page][0] < 2 * p50 + 10, page
