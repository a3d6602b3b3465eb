"""Callback ingest under gunicorn (5 sync workers) with the cluster stopped: signed callbacks,
as the sandbox sends them, for submitted generations, at 32 and then 8 concurrent connections
from a separate load process; beside a bare endpoint served by the same gunicorn that does the
same HMAC check and one INSERT of a receipt row (tests/benchmarks/ingest_urls.py).

CALLBACK_REQUESTS (default 3000) sets the callbacks per phase. On SQLite with the ORM broker
the run works too, and its title says so; PostgreSQL with Redis is the deployment it models.
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker

from imagereview.models import CallbackReceipt, Generation, ImageRequest
from imagereview.providers.sandbox import sign_callback
from tests.benchmarks.stack import CpuMeter, Web, start_web
from tests.benchmarks.support import percentile, print_table
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

CALLBACKS = int(os.environ.get("CALLBACK_REQUESTS", "3000"))
CONCURRENCY = (32, 8)
WEB_WORKERS = 5
WARM_UP = 200
HMAC_KEY = "benchmark-hmac-key"
GOAL_RATIO = 0.7
GOAL_P99 = 0.050  # seconds, at 8 connections
BARE_PREFIX = "/bare-callbacks/"


@dataclass
class Phase:
    endpoint: str  # "app" or "bare"
    concurrency: int
    statuses: Counter[int]
    latencies: list[float]
    wall: float
    load_cpu: float
    web_cpu: float
    database_cpu: float | None
    broker_cpu: float | None
    answered: list[int]  # generations whose callback was answered 200

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    def latency_ms(self, share: float) -> float:
        return 1000 * percentile(self.latencies, share)


def submitted_generations(requester, count: int) -> list[Generation]:
    """Single-variant requests whose generation was submitted and awaits its callback."""
    now = timezone.now()
    requests = ImageRequest.objects.bulk_create(
        ImageRequest(prompt=f"a callback to receive, take {n}", requester=requester)
        for n in range(count)
    )
    return Generation.objects.bulk_create(
        Generation(
            request=image_request,
            state=Generation.State.SUBMITTED,
            provider_task_id=f"task_nano-banana-pro_{int(now.timestamp() * 1000)}_{n}",
            attempts=1,
            submitted_at=now,
            next_attempt_at=now + timedelta(minutes=10),
        )
        for n, image_request in enumerate(requests)
    )


def callback_body(generation: Generation, web: Web) -> str:
    """A success callback shaped as the sandbox sends it."""
    now_ms = int(time.time() * 1000)
    task_id = generation.provider_task_id
    record = {
        "taskId": task_id,
        "model": "nano-banana-pro",
        "state": "success",
        "param": json.dumps(
            {
                "model": "nano-banana-pro",
                "callBackUrl": generation.callback_url(),
                "input": {"prompt": generation.request.prompt, "output_format": "png"},
            }
        ),
        "resultJson": json.dumps({"resultUrls": [f"{web.url}/files/results/{task_id}/0.png"]}),
        "failCode": "",
        "failMsg": "",
        "costTime": 1600,
        "createTime": now_ms - 1600,
        "completeTime": now_ms,
        "updateTime": now_ms,
        "creditsConsumed": 18,
    }
    return json.dumps(
        {"code": 200, "msg": "Playground task completed successfully.", "data": record}
    )


def plan(generations: list[Generation], web: Web, *, endpoint: str) -> dict:
    address = urlsplit(web.url)
    requests = []
    for generation in generations:
        path = urlsplit(generation.callback_url()).path
        if endpoint == "bare":
            path = BARE_PREFIX + path.split("/callbacks/kie/", 1)[1]
        timestamp = str(int(time.time()))
        requests.append(
            {
                "path": path,
                "headers": {
                    "User-Agent": "sandbox",
                    "X-Webhook-Timestamp": timestamp,
                    "X-Webhook-Signature": sign_callback(
                        HMAC_KEY, generation.provider_task_id, timestamp
                    ),
                },
                "body": callback_body(generation, web),
            }
        )
    return {"host": address.hostname, "port": address.port, "requests": requests}


def send(planned: dict, concurrency: int, tmp_path) -> dict:
    plan_path, results_path = tmp_path / "plan.json", tmp_path / "results.json"
    plan_path.write_text(json.dumps(planned))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.callback_load",
            str(plan_path),
            str(results_path),
            "--concurrency",
            str(concurrency),
        ],
        cwd=ROOT,
        check=True,
    )
    return json.loads(results_path.read_text())


def run_phase(
    generations: list[Generation], web: Web, tmp_path, *, endpoint: str, concurrency: int
) -> Phase:
    planned = plan(generations, web, endpoint=endpoint)
    postgres = connection.vendor == "postgresql"
    meter = CpuMeter.of(
        {"web": web.service.pid},
        servers={
            **({"database": "postgres"} if postgres else {}),
            **({"broker": "redis-server"} if os.environ.get("REDIS_URL") else {}),
        },
    )
    meter.start()
    outcome = send(planned, concurrency, tmp_path)
    meter.stop()
    statuses = [status for status, _ in outcome["results"]]
    return Phase(
        endpoint=endpoint,
        concurrency=concurrency,
        statuses=Counter(statuses),
        latencies=[latency for _, latency in outcome["results"]],
        wall=outcome["wall"],
        load_cpu=outcome["cpu"],
        web_cpu=meter.spent["web"],
        database_cpu=meter.spent.get("database"),
        broker_cpu=meter.spent.get("broker"),
        answered=[g.pk for g, status in zip(generations, statuses, strict=True) if status == 200],
    )


def test_callback_ingest_against_a_bare_endpoint(start_service, requester, tmp_path):
    web = start_web(
        start_service,
        workers=WEB_WORKERS,
        settings_module="tests.benchmarks.ingest_settings",
        KIE_WEBHOOK_HMAC_KEY=HMAC_KEY,
        LOG_LEVEL="WARNING",
    )
    phases_planned = [(c, e) for c in CONCURRENCY for e in ("bare", "app")]
    generations = submitted_generations(requester, count=2 * WARM_UP + CALLBACKS * 4)
    # Every worker imports, connects and compiles its templates before anything is counted.
    for number, endpoint in enumerate(("bare", "app")):
        warm = generations[number * WARM_UP : (number + 1) * WARM_UP]
        send(plan(warm, web, endpoint=endpoint), 8, tmp_path)
    generations = generations[2 * WARM_UP :]
    phases = []
    for number, (concurrency, endpoint) in enumerate(phases_planned):
        batch = generations[number * CALLBACKS : (number + 1) * CALLBACKS]
        phases.append(run_phase(batch, web, tmp_path, endpoint=endpoint, concurrency=concurrency))
    get_broker().purge_queue()

    rows: list[tuple] = []
    for concurrency in CONCURRENCY:
        bare, app = (p for p in phases if p.concurrency == concurrency)
        ratio = app.rate / bare.rate
        rows += [
            (
                f"{concurrency} connections: requests per second",
                f"{app.rate:.0f}",
                f"{bare.rate:.0f}",
            ),
            (
                "  ratio app / bare",
                f"{ratio:.2f}",
                "",
                f"goal >= {GOAL_RATIO}",
                _met(ratio >= GOAL_RATIO),
            ),
            ("  latency p50 (ms)", f"{app.latency_ms(0.5):.1f}", f"{bare.latency_ms(0.5):.1f}"),
            (
                "  latency p99 (ms)",
                f"{app.latency_ms(0.99):.1f}",
                f"{bare.latency_ms(0.99):.1f}",
                *(
                    (
                        f"goal <= {GOAL_P99 * 1000:.0f}",
                        _met(app.latency_ms(0.99) <= GOAL_P99 * 1000),
                    )
                    if concurrency == 8
                    else ()
                ),
            ),
            ("  answers", _statuses(app), _statuses(bare)),
            (
                "  web CPU per callback (ms)",
                *(f"{1000 * p.web_cpu / len(p.latencies):.2f}" for p in (app, bare)),
            ),
            (
                "  web CPU (% of one core)",
                *(f"{100 * p.web_cpu / p.wall:.0f}" for p in (app, bare)),
            ),
            *(
                (f"  {name} CPU (% of one core)", *(f"{100 * p / wall:.0f}" for p, wall in shares))
                for name, shares in (
                    ("database", [(app.database_cpu, app.wall), (bare.database_cpu, bare.wall)]),
                    ("broker", [(app.broker_cpu, app.wall), (bare.broker_cpu, bare.wall)]),
                )
                if shares[0][0] is not None
            ),
            (
                "  load generator CPU (% of one core)",
                *(f"{100 * p.load_cpu / p.wall:.0f}" for p in (app, bare)),
            ),
        ]
    broker = "Redis" if os.environ.get("REDIS_URL") else "ORM"
    print_table(
        f"Callback ingest: {CALLBACKS} signed callbacks per phase, gunicorn x {WEB_WORKERS} sync "
        f"workers, cluster stopped, {connection.vendor} + {broker} broker",
        rows,
        headers=["app", "bare"],
    )

    for phase in phases:
        assert phase.statuses == {200: CALLBACKS}, (
            f"{phase.endpoint} x {phase.concurrency}: {phase.statuses}"
        )
    for phase in (p for p in phases if p.endpoint == "app"):
        received = CallbackReceipt.objects.filter(
            generation_id__in=phase.answered, outcome=CallbackReceipt.Outcome.ACCEPTED
        )
        kept = set(received.values_list("generation_id", flat=True))
        lost = set(phase.answered) - kept
        assert not lost, (
            f"{len(lost)} callbacks answered 200 without a receipt: {sorted(lost)[:20]}"
        )
        assert received.count() == len(phase.answered)


def _statuses(phase: Phase) -> str:
    return " ".join(f"{status}x{n}" for status, n in sorted(phase.statuses.items()))


def _met(met: bool) -> str:
    return "met" if met else "not met"
