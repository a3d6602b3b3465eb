"""gunicorn's worker class for the web process: sync workers (the config module's default, the
baseline) against threaded workers, serving the review queue to a signed-in reviewer and an
output's thumbnail, at a fixed concurrency for a fixed time, on the same machine and run."""

import asyncio
import statistics
import sys
import time

import pytest
from django.db import connection
from django.test import Client

from imagereview.models import Asset
from tests.benchmarks.stack import free_port, wait_for_http
from tests.conftest import make_user
from tests.factories import request_in_review

pytestmark = [pytest.mark.benchmark, pytest.mark.cluster]

SECONDS = 8
CONCURRENCY = 16
CONFIGS = {
    "sync x5 (default)": {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_WORKERS": "5"},
    "sync x2": {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_WORKERS": "2"},
    "gthread x2, 4 threads": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "4",
    },
    "gthread x5, 2 threads": {
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_WORKERS": "5",
        "GUNICORN_THREADS": "2",
    },
}


async def _get(port: int, path: str, cookie: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
    except (OSError, IndexError, ValueError):
        status = 0
    return status, time.perf_counter() - started


async def _load(port: int, paths: list[str], cookie: str) -> list[tuple[int, float]]:
    results: list[tuple[int, float]] = []
    deadline = time.monotonic() + SECONDS

    async def client(offset: int) -> None:
        turn = offset
        while time.monotonic() < deadline:
            results.append(await _get(port, paths[turn % len(paths)], cookie))
            turn += 1

    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)))
    return results


def test_sync_workers_against_threaded_workers(start_service, live_server, requester):
    reviewer = make_user("rita-bench", "reviewers")
    for number in range(20):
        request_in_review(requester, prompt=f"queue item {number}", real_images=False)
    thumbnail = Asset.objects.filter(kind=Asset.Kind.OUTPUT).first()
    browser = Client()
    browser.force_login(reviewer)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    paths = ["/review/", f"/assets/{thumbnail.pk}/thumb/"]

    rows = []
    for name, env in CONFIGS.items():
        port = free_port()
        threaded = env["GUNICORN_WORKER_CLASS"] == "gthread"
        service = start_service(
            f"gunicorn-{len(rows)}",
            [sys.executable, "-m", "gunicorn", "-c", "python:imagereview.gunicorn_conf"]
            + ["imagereview.wsgi"],
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_ACCESS_LOG="/dev/null",
            GUNICORN_LOG_LEVEL="warning",
            # A thread's connection would outlive it: none kept for threaded workers.
            DB_CONN_MAX_AGE="0" if threaded else "60",
            **env,
        )
        wait_for_http(f"http://127.0.0.1:{port}/login/", service)
        asyncio.run(_load(port, paths, cookie))  # warm every worker up once
        results = asyncio.run(_load(port, paths, cookie))
        service.stop()
        latencies = sorted(elapsed for status, elapsed in results if status == 200)
        errors = sum(1 for status, _ in results if status != 200)
        rows.append(
            (
                name,
                len(latencies) / SECONDS,
                statistics.median(latencies) * 1000,
                latencies[int(len(latencies) * 0.95)] * 1000,
                errors,
            )
        )

    baseline = rows[0][1]
    print(
        f"\ngunicorn worker classes: review queue + thumbnail, {CONCURRENCY} concurrent "
        f"clients, {SECONDS} s each, on {connection.vendor}"
    )
    print(f"{'config':<24} {'req/s':>8} {'vs sync':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
    for name, rate, p50, p95, errors in rows:
        print(f"{name:<24} {rate:8.1f} {rate / baseline:7.2f}x {p50:8.1f} {p95:8.1f} {errors:7d}")
    assert all(errors == 0 for *_, errors in rows)
