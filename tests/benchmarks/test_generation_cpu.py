"""Where a generation's CPU goes: each step of its life run in this process, one after another,
timed on this thread's own CPU clock (the sandbox answers from its own threads, not counted).

The steps are the ones the cluster and the web process run: the create, the submit job, the
provider's callback, and the refresh job, which stores the outputs once the task is final.
Beside each step's CPU: its SQL statements and its wall time (what it waited for besides
CPU: the database, the sandbox, the broker). PROFILE=1 prints the functions that cost the
most, across all steps; SHOW_SQL=1 the statements of one generation.
"""

import cProfile
import json
import os
import pstats
import statistics
import time
from collections import defaultdict

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from imagereview import tasks
from imagereview.models import Generation, ImageRequest
from imagereview.providers.sandbox import sign_callback
from tests.benchmarks.support import print_table, queue_requests

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

GENERATIONS = int(os.environ.get("CPU_GENERATIONS", "60"))
WARM_UP = 5
HMAC_KEY = "benchmark-hmac-key"


def _callback(client: Client, generation: Generation, record: dict) -> int:
    timestamp = str(int(time.time()))
    payload = {"code": 200, "msg": "Playground task completed successfully.", "data": record}
    response = client.post(
        generation.callback_url().split("testserver", 1)[-1],
        data=json.dumps(payload),
        content_type="application/json",
        headers={
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": sign_callback(HMAC_KEY, generation.provider_task_id, timestamp),
        },
    )
    return response.status_code


def test_cpu_per_generation_by_step(sandbox, requester, settings, enqueued):
    settings.KIE_WEBHOOK_HMAC_KEY = HMAC_KEY
    settings.KIE_CALLBACKS = True
    settings.PUBLIC_BASE_URL = "http://testserver"
    sandbox.configure(
        latency={"waiting": 0, "queuing": 0, "generating": 0},
        submit_limit=1_000_000,
        query_limit=1_000_000,
    )
    settings.KIE_SUBMIT_LIMIT = settings.KIE_QUERY_LIMIT = 1_000_000
    web = Client()
    spent: dict[str, list[float]] = defaultdict(list)
    statements: dict[str, list[int]] = defaultdict(list)
    waited: dict[str, list[float]] = defaultdict(list)
    profiler = cProfile.Profile() if os.environ.get("PROFILE") else None

    def step(name: str, work, number: int):
        profiled = profiler and number >= WARM_UP and os.environ.get("PROFILE") in ("1", name)
        if profiled:
            profiler.enable()
        started, started_wall = time.thread_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            result = work()
        if number >= WARM_UP:
            spent[name].append(time.thread_time() - started)
            waited[name].append(time.perf_counter() - started_wall)
            statements[name].append(len(queries))
            if os.environ.get("SHOW_SQL") and number == WARM_UP:
                print(f"\n-- {name}")
                for query in queries:
                    print(query["sql"][:160])
        if profiled:
            profiler.disable()
        return result

    for number in range(GENERATIONS + WARM_UP):
        [request_id] = step(
            "create (web)",
            lambda n=number: queue_requests(requester, count=1, seed=n, variants=(1,)),
            number,
        )
        generation = Generation.objects.get(request_id=request_id)
        step("submit job", lambda g=generation: tasks.submit_generation(g.pk), number)
        generation.refresh_from_db()
        assert generation.provider_task_id, generation.failure_message
        record = _final_record(sandbox, generation.provider_task_id)
        status = step("callback (web)", lambda g=generation, r=record: _callback(web, g, r), number)
        assert status == 200
        step("refresh job", lambda g=generation: tasks.refresh_generation(g.pk), number)
        generation.refresh_from_db()
        if generation.state == Generation.State.SUCCEEDED:
            step("store job", lambda g=generation: tasks.store_outputs(g.pk), number)
        assert ImageRequest.objects.get(pk=request_id).status == ImageRequest.Status.IN_REVIEW
        enqueued.clear()

    total = [sum(column) for column in zip(*spent.values(), strict=False)]
    whole_wall = [sum(column) for column in zip(*waited.values(), strict=False)]
    rows = [
        (
            name,
            f"{statistics.median(times) * 1000:.1f}",
            f"{statistics.mean(times) * 1000:.1f}",
            f"{statistics.mean(statements[name]):.0f}",
            f"{statistics.median(waited[name]) * 1000:.1f}",
        )
        for name, times in spent.items()
    ]
    rows.append(
        (
            "whole generation",
            f"{statistics.median(total) * 1000:.1f}",
            f"{statistics.mean(total) * 1000:.1f}",
            f"{sum(statistics.mean(counts) for counts in statements.values()):.0f}",
            f"{statistics.median(whole_wall) * 1000:.1f}",
        )
    )
    print_table(
        f"CPU per generation by step ({GENERATIONS} generations, 1K, {_database()})",
        rows,
        headers=("CPU p50 ms", "CPU mean ms", "SQL statements", "wall p50 ms"),
    )
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(
            45
        )


def _final_record(sandbox, task_id: str) -> dict:
    """The task's record once the sandbox has finished it, as its callback would carry."""
    deadline = time.monotonic() + 10
    while True:
        record = httpx.get(
            f"{sandbox.url}/api/v1/jobs/recordInfo",
            params={"taskId": task_id},
            headers={"Authorization": "Bearer sandbox-key"},
        ).json()["data"]
        if record["state"] in ("success", "fail") or time.monotonic() > deadline:
            return record
        time.sleep(0.01)


def _database() -> str:
    return connection.vendor
