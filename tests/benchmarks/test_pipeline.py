"""End-to-end throughput: many single-variant requests from intake to review, with the provider
taken out of the way (no task latency, no rate limits), two clusters, the dispatcher, gunicorn
taking the callbacks and the sandbox in its own process, on whichever database and broker the
run is configured with. What each process spends in CPU is measured apart.

PIPELINE_REQUESTS (default 1000) sets the number of requests; PIPELINE_TIME_LIMIT (seconds,
default 270) ends the wait early, and the figures then cover the requests that reached review.
"""

import io
import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django_q.brokers import get_broker
from PIL import Image

from imagereview.models import Asset, Event, Generation, ImageRequest
from tests.benchmarks.stack import (
    SANDBOX_KEY,
    CpuMeter,
    SandboxProcess,
    make_sandbox_unbounded,
    start_sandbox,
    start_web,
)
from tests.benchmarks.support import log_tails, percentile, print_table, queue_requests, quiet_logs

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

REQUESTS = int(os.environ.get("PIPELINE_REQUESTS", "1000"))
TIME_LIMIT = float(os.environ.get("PIPELINE_TIME_LIMIT", "270"))
CLUSTERS = 2
WEB_WORKERS = 3
SEED = 5
BASELINE_TASKS = int(os.environ.get("PIPELINE_BASELINE_TASKS", "100"))


def in_review_at(request_ids: list[int]) -> dict[int, float]:
    """When each request moved into review (epoch seconds), for those that have."""
    moves = Event.objects.filter(
        subject="request", request_id__in=request_ids, to_state=ImageRequest.Status.IN_REVIEW
    ).values_list("request_id", "created_at")
    return {request_id: moment.timestamp() for request_id, moment in moves}


def provider_only_rate(sandbox: SandboxProcess, *, tasks: int, workers: int) -> float:
    """Generations per second with the app replaced by the least a client must do (create,
    poll, download, decode) on as many threads as the clusters have workers: the ceiling the
    sandbox and this machine allow."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(number: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(
                base_url=sandbox.url, headers={"Authorization": f"Bearer {SANDBOX_KEY}"}, timeout=30
            )
            clients.append(local.http)
        http = local.http
        body = {"model": "nano-banana-pro", "input": {"prompt": f"a ceiling measurement, {number}"}}
        task_id = http.post("/api/v1/jobs/createTask", json=body).json()["data"]["taskId"]
        while True:
            record = http.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()
            if record["data"]["state"] == "success":
                break
            time.sleep(0.02)
        url = json.loads(record["data"]["resultJson"])["resultUrls"][0]
        Image.open(io.BytesIO(http.get(url).content)).load()

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(tasks)))
    rate = tasks / (time.monotonic() - started)
    for http in clients:
        http.close()
    return rate


def wait_ready(processes, needle: str, timeout: float = 60.0) -> None:
    """Wait until each process has logged `needle`: started, imports done, serving."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(needle in process.log() for process in processes):
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout:g} s\n{log_tails(dict(enumerate(processes)))}")


def test_pipeline_throughput(start_process, start_service, cluster_env, requester):
    sandbox = start_sandbox(start_service)
    app_env = make_sandbox_unbounded(sandbox)
    web = start_web(start_service, workers=WEB_WORKERS, **app_env)
    app_env |= {
        "KIE_API_BASE": sandbox.url,
        "KIE_UPLOAD_BASE": sandbox.url,
        "PUBLIC_BASE_URL": web.url,
        "LOG_LEVEL": "WARNING",
    }
    clusters = {f"qcluster-{n}": start_process("qcluster", **app_env) for n in range(CLUSTERS)}
    dispatch = start_process("dispatch", **app_env)
    wait_ready(clusters.values(), "running")
    wait_ready([dispatch], "Dispatcher running")
    processes = {**clusters, "dispatch": dispatch, "web": web.service, "sandbox": sandbox.service}
    workers = CLUSTERS * int(cluster_env["Q_WORKERS"])
    ceiling = provider_only_rate(sandbox, tasks=BASELINE_TASKS, workers=workers)
    tasks_before = len(sandbox.tasks())
    provider = httpx.get(f"{sandbox.url}/sandbox/config").json()["data"]
    postgres = connection.vendor == "postgresql"
    meter = CpuMeter.of(
        {name: process.process.pid for name, process in processes.items()},
        servers={
            **({"postgres (all its processes)": "postgres"} if postgres else {}),
            **({"redis-server": "redis-server"} if os.environ.get("REDIS_URL") else {}),
        },
        alone={"test process (intake, watching)": os.getpid()},
    )
    broker = get_broker()
    peak_backlog = 0

    meter.start()
    started = time.time()
    with quiet_logs():
        request_ids = queue_requests(requester, count=REQUESTS, seed=SEED, variants=(1,))
    intake = time.time() - started
    deadline = time.monotonic() + TIME_LIMIT
    reviewed: dict[int, float] = {}
    while time.monotonic() < deadline:
        peak_backlog = max(peak_backlog, broker.queue_size())
        reviewed = in_review_at(request_ids)
        if len(reviewed) == len(request_ids):
            break
        time.sleep(1.0)
    meter.stop()
    finished = len(reviewed) == len(request_ids)

    created = dict(ImageRequest.objects.filter(pk__in=request_ids).values_list("pk", "created_at"))
    to_review = [reviewed[pk] - created[pk].timestamp() for pk in reviewed]
    span = max(reviewed.values(), default=started) - started
    rate = len(reviewed) / span if span else 0.0
    states = Counter(
        Generation.objects.filter(request_id__in=request_ids).values_list("state", flat=True)
    )
    tasks = sandbox.tasks()[tasks_before:]
    cpu_rows = [
        (f"CPU {name} (% of one core)", f"{meter.share(name):.1f}", f"{meter.spent[name]:.1f} s")
        for name in meter.names
    ]
    print_table(
        f"Pipeline: {REQUESTS} single-variant requests, {CLUSTERS} clusters x "
        f"{cluster_env['Q_WORKERS']} workers, gunicorn x {WEB_WORKERS}, sandbox at zero "
        f"latency without limits, {connection.vendor} + "
        f"{'Redis' if os.environ.get('REDIS_URL') else 'ORM'} broker",
        [
            (
                "reached review",
                f"{len(reviewed)} of {len(request_ids)}"
                + ("" if finished else f" (stopped at the {TIME_LIMIT:g} s time limit)"),
            ),
            ("intake of all requests (s)", f"{intake:.1f}"),
            ("sandbox: distinct pictures (0: one per task)", provider.get("distinct_pictures", 0)),
            ("first request to last in review (s)", f"{span:.1f}"),
            ("generations per second", f"{rate:.2f}"),
            (
                f"  baseline: provider-only ceiling, {workers} threads",
                f"{ceiling:.2f}",
                f"ratio {rate / ceiling:.2f}",
            ),
            ("time to review p50 (s)", f"{percentile(to_review, 0.5):.2f}"),
            ("time to review p95 (s)", f"{percentile(to_review, 0.95):.2f}"),
            ("peak broker backlog (jobs)", peak_backlog),
            *cpu_rows,
            ("CPU all measured (% of one core)", f"{100 * meter.total / meter.wall:.1f}"),
            (
                "CPU-seconds per generation reviewed",
                f"{meter.total / len(reviewed):.3f}" if reviewed else "-",
            ),
            *((f"generations {state}", n) for state, n in sorted(states.items())),
            ("provider tasks", len(tasks)),
        ],
    )

    assert reviewed, f"no request reached review\n{log_tails(processes)}"
    # Nothing lost: whatever reached review has its output stored, and nothing failed.
    assert not (states.keys() - {Generation.State.STORED} - _IN_FLIGHT), states
    stored = Generation.objects.filter(request_id__in=reviewed, state=Generation.State.STORED)
    assert stored.count() == len(reviewed)
    outputs = Asset.objects.filter(
        kind=Asset.Kind.OUTPUT, generation__request_id__in=reviewed
    ).count()
    assert outputs == len(reviewed), f"{outputs} outputs for {len(reviewed)} requests"
    if finished:
        assert states == {Generation.State.STORED: len(request_ids)}, states
        assert len(tasks) == len(request_ids), f"{len(tasks)} tasks for {len(request_ids)}"


_IN_FLIGHT = {
    Generation.State.QUEUED,
    Generation.State.SUBMITTING,
    Generation.State.SUBMITTED,
    Generation.State.SUCCEEDED,
}
