"""Server time of the queue and review pages on 100 000 requests with 300 000 outputs,
next to the same pages on 100 requests, measured in one run."""

import statistics
import time

import pytest
from django.db import connection, transaction
from django.urls import reverse

from imagereview.models import Asset, Generation, ImageRequest
from imagereview.views.review import queue_cursor
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


def timings(client, url: str) -> tuple[float, float]:
    client.get(url)  # warm caches and connections
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def measure(client, image_request_id: int) -> dict[str, tuple[float, float]]:
    """The pages, the deep ones at `image_request_id` (a queue page starts just past it)."""
    queue = reverse("review_queue")
    deep = queue_cursor(ImageRequest.objects.get(pk=image_request_id))
    return {
        "queue, first page": timings(client, queue),
        "queue, deep page": timings(client, f"{queue}?after={deep}"),
        "queue, flagged filter": timings(client, queue + "?flagged=on"),
        "queue, newest first": timings(client, queue + "?sort=newest"),
        "review page": timings(client, reverse("review_detail", args=[image_request_id])),
    }


def test_queue_and_review_pages_at_100_and_100_000_requests(requester, reviewer):
    client = client_for(reviewer)
    fill(requester, 100)
    middle = ImageRequest.objects.order_by("id")[50].pk
    small = measure(client, middle)

    started = time.perf_counter()
    fill(requester, 100_000 - 100, start=100)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    assert ImageRequest.objects.count() == 100_000
    assert Asset.objects.count() == 300_000
    deep = ImageRequest.objects.order_by("id")[60_000].pk
    large = measure(client, deep)

    print(
        f"\n{connection.vendor}: filled 100 000 requests / 300 000 outputs in {fill_seconds:.0f} s"
    )
    print(f"{'page':<24}{'100 req p50':>12}{'p95':>8}{'100k p50':>11}{'p95':>8}{'ratio p50':>11}")
    for page, (p50, p95) in small.items():
        big50, big95 = large[page]
        figures = f"{p50:>10.1f}ms{p95:>6.1f}ms{big50:>9.1f}ms{big95:>6.1f}ms"
        print(f"{page:<24}{figures}{big50 / p50:>10.2f}x")
    # The pages are keyset-paged and indexed: a thousandfold more data must not cost tenfold.
    for page, (p50, _) in small.items():
        assert large[page][0] < 10 * p50 + 20, page
