"""Server time and queries of the API's request lists at 100 000 requests, next to the same
calls at 100 requests, measured in one run.

Three calls, each as a requester (their own requests: nine in ten, as a pipeline's account
sends most of the work) and as a reviewer (all of them): the first page, a deep page (reached
by following `next_cursor` three times), and a list filtered by status. Calls go through
Django's test client with a token header, in process; each measured call gets a token of its
own, so that none meets the rate limit.
"""

import os
import statistics
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.test import Client

from imagereview.actions.tokens import issue_token
from imagereview.models import ImageRequest
from imagereview.roles import REQUESTERS
from tests.benchmarks.support import print_table
from tests.conftest import make_user

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

ROUNDS = 30
SMALL, LARGE = 100, 100_000
DEEP_PAGE = 4
R = ImageRequest.Status
# A history where most work has ended: a fifth waits for review.
STATUSES = (R.APPROVED, R.APPROVED, R.REJECTED, R.IN_REVIEW, R.APPROVED) * 3 + (
    R.FAILED,
    R.CHANGES_REQUESTED,
    R.APPROVED,
    R.IN_REVIEW,
    R.GENERATING,
)
LIST = "/api/v1/requests"


def fill(owners: list[AbstractBaseUser], count: int, *, start: int) -> None:
    """`count` requests, the tenth of each ten by the last of `owners` and the rest by the
    first, with a spread of statuses."""
    batch = 5000
    for offset in range(0, count, batch):
        numbers = range(start + offset, start + min(offset + batch, count))
        with transaction.atomic():
            ImageRequest.objects.bulk_create(
                ImageRequest(
                    requester=owners[-1] if n % 10 == 9 else owners[0],
                    prompt=f"benchmark prompt {n}: a lighthouse at dusk",
                    variants=2,
                    status=STATUSES[n % len(STATUSES)],
                )
                for n in numbers
            )


def token_client(user: AbstractBaseUser) -> Client:
    """A client that calls the API with a fresh read token of `user`."""
    _, text = issue_token(user=user, name="benchmark", scopes=["read"])
    return Client(HTTP_AUTHORIZATION=f"Bearer {text}")


def page_url(client: Client, *, follow: int = 0, query: str = "") -> str:
    """The URL of the list's page after following `next_cursor` `follow` times."""
    url = f"{LIST}?{query}"
    for _ in range(follow):
        cursor = client.get(url).json()["next_cursor"]
        assert cursor, f"{url} is the last page"
        url = f"{LIST}?{query}&cursor={cursor}" if query else f"{LIST}?cursor={cursor}"
    return url


def timings(user: AbstractBaseUser, locate: Callable[[Client], str]) -> tuple[float, float, int]:
    """p50 and p95 milliseconds of the call `locate` finds, and the queries one call runs."""
    client = token_client(user)
    url = locate(client)
    first = client.get(url)  # also warms caches and notes the token's use
    assert first.status_code == 200, first.content
    assert first.json()["items"], url
    queries = []

    def count(execute: Callable, sql: str, params: object, many: bool, context: dict) -> object:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert client.get(url).status_code == 200
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], len(queries)


def measure(viewers: dict[str, AbstractBaseUser]) -> dict[str, tuple[float, float, int]]:
    calls = {
        "first page": lambda client: page_url(client),
        f"page {DEEP_PAGE} (by next_cursor)": lambda client: page_url(client, follow=DEEP_PAGE - 1),
        "status=in_review": lambda client: page_url(client, query="status=in_review"),
    }
    return {
        f"{who}: {call}": timings(user, locate)
        for who, user in viewers.items()
        for call, locate in calls.items()
    }


def test_request_lists_at_100_and_100_000_requests(requester, reviewer):
    other = make_user("bob", REQUESTERS)
    owners = [requester, other]
    viewers = {"requester": requester, "reviewer": reviewer}
    load = os.getloadavg()[0]
    fill(owners, SMALL, start=0)
    small = measure(viewers)

    started = time.perf_counter()
    fill(owners, LARGE - SMALL, start=SMALL)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    assert ImageRequest.objects.count() == LARGE
    large = measure(viewers)

    rows = []
    for call, (p50, p95, queries) in small.items():
        big50, big95, big_queries = large[call]
        rows.append(
            (
                call,
                f"{p50:.1f}",
                f"{p95:.1f}",
                queries,
                f"{big50:.1f}",
                f"{big95:.1f}",
                big_queries,
                f"{big50 / p50:.2f}x",
            )
        )
    worst = max(large[call][0] / small[call][0] for call in small)
    print_table(
        f"{connection.vendor}: GET {LIST} (24 a page, a token each), {ROUNDS} rounds, "
        f"100 requests, then 100 000 (filled in {fill_seconds:.0f} s); milliseconds; "
        f"{os.cpu_count()} CPUs, load {load:.1f} at the start",
        rows,
        headers=("100 p50", "p95", "queries", "100k p50", "p95", "queries", "ratio p50"),
    )
    print(
        f"  goal: p50 ratio ≤ 1.5 (worst {worst:.2f}x: {'met' if worst <= 1.5 else 'NOT met'}), "
        "the same number of queries at both sizes"
    )
    for call, (_, _, queries) in small.items():
        assert large[call][2] == queries, call
