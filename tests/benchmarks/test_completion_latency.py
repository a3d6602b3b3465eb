"""From the provider's completion to the request's move into review, with callbacks on and
the sandbox at its default latency: a steady trickle of requests, then a burst. Beside it, in
the same run, the floor any receiver pays: a loopback download and decode of the same file.

The sandbox, gunicorn (taking the signed callbacks), one cluster and the dispatcher each run
in their own process, on whichever database and broker the run is configured with.
"""

import io
import json
import time
from dataclasses import dataclass, field

import httpx
import pytest
from django.db import connection
from PIL import Image

from imagereview.models import CallbackReceipt, Event, Generation, ImageRequest
from tests.benchmarks.stack import SandboxProcess, start_sandbox, start_web
from tests.benchmarks.support import (
    log_tails,
    percentile,
    print_table,
    queue_requests,
    quiet_logs,
    requests_generating,
    wait_until,
)

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

REQUESTS = 40
TRICKLE_PER_SECOND = 2
HMAC_KEY = "benchmark-hmac-key"
GOAL_P50, GOAL_P95 = 0.5, 1.0
SEGMENTS = (
    ("completion -> callback received", "completed", "received"),
    ("received -> refreshed (succeeded)", "received", "succeeded"),
    ("refreshed -> outputs stored", "succeeded", "stored"),
    ("stored -> request in review", "stored", "review"),
)


@dataclass
class Group:
    label: str
    request_ids: list[int]
    # Per generation: moment name -> epoch seconds.
    moments: list[dict[str, float]] = field(default_factory=list)
    # Per generation: seconds to download and decode its result over loopback.
    floor: list[float] = field(default_factory=list)

    def spans(self, start: str, end: str) -> list[float]:
        return [m[end] - m[start] for m in self.moments if start in m and end in m]


def trickle(requester, *, count: int, per_second: float, seed: int) -> list[int]:
    """Create `count` requests at a steady pace, one at a time."""
    started = time.monotonic()
    ids = []
    for number in range(count):
        time.sleep(max(0.0, started + number / per_second - time.monotonic()))
        ids += queue_requests(requester, count=1, seed=seed * 1000 + number, variants=(1,))
    return ids


def measure(group: Group, sandbox: SandboxProcess) -> None:
    """Read when each generation's task completed, when its callback came, and when the app
    moved it on; then time the loopback floor on the same result files."""
    generations = list(Generation.objects.filter(request_id__in=group.request_ids))
    reviewed = dict(
        Event.objects.filter(
            subject="request",
            request_id__in=group.request_ids,
            to_state=ImageRequest.Status.IN_REVIEW,
        ).values_list("request_id", "created_at")
    )
    moves: dict[tuple[int, str], float] = {}
    for generation_id, to_state, moment in Event.objects.filter(
        subject="generation",
        generation__in=generations,
        to_state__in=(Generation.State.SUCCEEDED, Generation.State.STORED),
    ).values_list("generation_id", "to_state", "created_at"):
        moves.setdefault((generation_id, to_state), moment.timestamp())
    received: dict[str, float] = {}
    for task_id, moment in CallbackReceipt.objects.filter(
        generation__in=generations, outcome=CallbackReceipt.Outcome.ACCEPTED
    ).values_list("task_id", "received_at"):
        received[task_id] = min(moment.timestamp(), received.get(task_id, moment.timestamp()))
    with httpx.Client(timeout=30.0) as http:
        for generation in generations:
            record = sandbox.record(http, generation.provider_task_id)
            moments = {"completed": record["completeTime"] / 1000}
            if generation.provider_task_id in received:
                moments["received"] = received[generation.provider_task_id]
            for state in ("succeeded", "stored"):
                if (generation.pk, state) in moves:
                    moments[state] = moves[(generation.pk, state)]
            moments["review"] = reviewed[generation.request_id].timestamp()
            group.moments.append(moments)
            url = json.loads(record["resultJson"])["resultUrls"][0]
            started = time.perf_counter()
            Image.open(io.BytesIO(http.get(url).content)).load()
            group.floor.append(time.perf_counter() - started)


def test_time_from_completion_to_review(start_process, start_service, requester, settings):
    sandbox = start_sandbox(start_service, KIE_WEBHOOK_HMAC_KEY=HMAC_KEY)
    web = start_web(start_service, workers=3, KIE_WEBHOOK_HMAC_KEY=HMAC_KEY, LOG_LEVEL="WARNING")
    env = {
        "KIE_API_BASE": sandbox.url,
        "KIE_UPLOAD_BASE": sandbox.url,
        "PUBLIC_BASE_URL": web.url,
        "KIE_WEBHOOK_HMAC_KEY": HMAC_KEY,
    }
    processes = {
        "qcluster": start_process("qcluster", **env),
        "dispatch": start_process("dispatch", **env),
        "web": web.service,
        "sandbox": sandbox.service,
    }
    latency = httpx.get(f"{sandbox.url}/sandbox/config").json()["data"]["latency"]
    groups = []
    with quiet_logs():
        for label, make in (
            (
                f"trickle: {REQUESTS} at {TRICKLE_PER_SECOND}/s",
                lambda: trickle(requester, count=REQUESTS, per_second=TRICKLE_PER_SECOND, seed=1),
            ),
            (
                f"burst: {REQUESTS} at once",
                lambda: queue_requests(requester, count=REQUESTS, seed=2, variants=(1,)),
            ),
        ):
            group = Group(label, make())
            finished = wait_until(
                lambda g=group: not requests_generating(g.request_ids), timeout=180
            )
            assert finished, f"{label}: requests still generating\n{log_tails(processes)}"
            groups.append(group)
    # The reads below are not the app's: lift the provider's query limit for them.
    sandbox.configure(query_limit=100_000)
    for group in groups:
        measure(group, sandbox)

    rows: list[tuple] = []
    for group in groups:
        total = group.spans("completed", "review")
        p50, p95 = percentile(total, 0.5), percentile(total, 0.95)
        rows += [
            (group.label,),
            (
                "  completion -> in review p50 (s)",
                f"{p50:.3f}",
                f"goal <= {GOAL_P50}",
                _met(p50 <= GOAL_P50),
            ),
            (
                "  completion -> in review p95 (s)",
                f"{percentile(total, 0.95):.3f}",
                f"goal <= {GOAL_P95}",
                _met(p95 <= GOAL_P95),
            ),
            ("  completion -> in review max (s)", f"{max(total):.3f}"),
            (
                "  baseline: loopback download + decode p50 / p95 (ms)",
                " / ".join(f"{1000 * percentile(group.floor, s):.1f}" for s in (0.5, 0.95)),
            ),
            *(
                (
                    f"  {name} p50 / p95 (s), of {len(spans)}",
                    f"{percentile(spans, 0.5):.3f} / {percentile(spans, 0.95):.3f}",
                )
                for name, start, end in SEGMENTS
                for spans in [group.spans(start, end)]
            ),
        ]
    broker = "Redis" if settings.REDIS_URL else "ORM"
    print_table(
        f"Completion to review: callbacks on, sandbox latency {latency}, 1 cluster x 2 workers, "
        f"gunicorn x 3, {connection.vendor} + {broker} broker",
        rows,
    )

    for group in groups:
        stored = Generation.objects.filter(
            request_id__in=group.request_ids, state=Generation.State.STORED
        )
        assert stored.count() == len(group.request_ids) == len(group.moments)
        assert ImageRequest.objects.filter(
            pk__in=group.request_ids, status=ImageRequest.Status.IN_REVIEW
        ).count() == len(group.request_ids)


def _met(met: bool) -> str:
    return "met" if met else "not met"
