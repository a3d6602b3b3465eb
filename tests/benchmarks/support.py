"""What the soak test and the benchmarks share: a seeded workload, runs with a cluster that
gets killed, an audit of every provider task against our tables, and plain-text tables."""

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from django.contrib.auth.models import AbstractBaseUser
from django_q.brokers import get_broker

from imagereview import actions
from imagereview.models import Asset, CallbackReceipt, Generation, ImageRequest
from imagereview.providers.sandbox import SandboxServer
from tests.conftest import ManagedProcess

G = Generation.State
R = ImageRequest.Status
CREATE = "/api/v1/jobs/createTask"
QUERY = "/api/v1/jobs/recordInfo"
TINY_LATENCY = {"waiting": 0.05, "queuing": 0.05, "generating": 0.1}

# Every fault the sandbox knows, at moderate rates.
FAULTS = {
    "rate_429": 0.05,
    "rate_5xx": 0.05,
    "rate_455": 0.05,
    "rate_timeout": 0.15,
    "rate_fail_501": 0.05,
    "rate_drop_callback": 0.15,
    "rate_duplicate_callback": 0.1,
    "rate_delay_callback": 0.2,
    "rate_early_callback": 0.1,
    "rate_result_404_once": 0.1,
    "rate_result_expired": 0.1,
}
# A create sleeps past the client's read timeout, and a delayed callback comes after the
# grace period and the resubmission, so that the first task of some timed-out creates is
# claimed later as a duplicate.
SOAK_SANDBOX = {
    **FAULTS,
    "latency": TINY_LATENCY,
    "timeout_sleep": 3.0,
    "callback_delay": 8.0,
}
# Short grace periods and leases, so recovery from kills and lost jobs takes seconds; the
# job timeout stays below the ORM broker's re-delivery and above the longest job. A lease
# much shorter than the broker's backlog floods it with copies of every leased job.
SOAK_ENV = {
    "KIE_READ_TIMEOUT": "2",
    "RECONCILE_FIRST_POLL": "3",
    "RECONCILE_SUBMITTING_GRACE": "3",
    "RECONCILE_GIVE_UP": "600",
    "DISPATCH_LEASE": "8",
    "Q_TIMEOUT": "10",
    "Q_RETRY": "12",
}
# A task created this long before a kill may have been answered to a worker that died before
# it stored the task id.
KILL_WINDOW = 10.0

SUBJECTS = (
    "a lighthouse at dusk",
    "a red bicycle against a blue wall",
    "three lemons on a marble table",
    "a fox in fresh snow",
    "a paper boat on a rain puddle",
    "a tram crossing a bridge",
)
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2")
FORMATS = ("png", "jpg")


def queue_requests(
    requester: AbstractBaseUser, *, count: int, seed: int, variants: Sequence[int] = (1, 2)
) -> list[int]:
    """Create `count` requests with seeded prompts and parameters; return their ids."""
    rng = random.Random(seed)
    ids = []
    for number in range(count):
        image_request = actions.create_request(
            requester=requester,
            prompt=f"{rng.choice(SUBJECTS)}, take {seed}-{number}",
            aspect_ratio=rng.choice(ASPECT_RATIOS),
            resolution="1K",
            output_format=rng.choice(FORMATS),
            variants=rng.choice(variants),
        )
        ids.append(image_request.pk)
    return ids


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def requests_generating(request_ids: Iterable[int] | None = None) -> int:
    queryset = ImageRequest.objects.filter(status=R.GENERATING)
    if request_ids is not None:
        queryset = queryset.filter(pk__in=list(request_ids))
    return queryset.count()


def log_tails(processes: dict[str, ManagedProcess], lines: int = 120) -> str:
    """The last lines of each process's log, to read when a run did not finish."""
    parts = []
    for name, process in processes.items():
        tail = "\n".join(process.log().splitlines()[-lines:])
        parts.append(f"----- {name} (last {lines} lines) -----\n{tail}")
    return "\n".join(parts)


def expected_callbacks(task: dict[str, Any]) -> int:
    """How many callbacks the sandbox sends for a finished task, by its faults."""
    faults = set(task["faults"])
    if "drop_callback" in faults:
        return 0
    return 2 if "duplicate_callback" in faults else 1


def pending_work(sandbox: SandboxServer) -> list[str]:
    """What is still to happen: requests or generations not final, tasks running or with
    callbacks unsent, tasks that called back and no generation holds. Empty once settled."""
    pending = []
    generating = ImageRequest.objects.filter(status=R.GENERATING).count()
    if generating:
        pending.append(f"{generating} requests generating")
    open_generations = list(
        Generation.objects.exclude(state__in=Generation.FINAL_STATES).values_list("pk", "state")
    )
    if open_generations:
        pending.append(f"{len(open_generations)} generations not final: {open_generations[:20]}")
    tasks = sandbox.tasks
    running = [task["taskId"] for task in tasks if task["state"] not in ("success", "fail")]
    if running:
        pending.append(f"{len(running)} tasks running: {running[:20]}")
    unsent = [task["taskId"] for task in tasks if task["callbacks_sent"] < expected_callbacks(task)]
    if unsent:
        pending.append(f"{len(unsent)} tasks with callbacks to send: {unsent[:20]}")
    held = set(
        Generation.objects.exclude(provider_task_id=None).values_list("provider_task_id", flat=True)
    )
    # A task whose callback was dropped may be unknowable; the audit sorts those out.
    unclaimed = [
        task["taskId"]
        for task in tasks
        if task["taskId"] not in held and "drop_callback" not in task["faults"]
    ]
    if unclaimed:
        pending.append(
            f"{len(unclaimed)} tasks that called back and no generation holds: {unclaimed[:20]}"
        )
    return pending


@dataclass
class Soak:
    """One fault-soak run: what was killed, and whether it settled in time."""

    request_ids: list[int]
    env: dict[str, str]
    kills: list[float] = field(default_factory=list)  # epoch seconds, the sandbox's clock
    peak_backlog: int = 0
    jobs: Counter[str] = field(default_factory=Counter)  # jobs the clusters ran, by name
    elapsed: float = 0.0
    pending: list[str] = field(default_factory=list)  # what was left when the wait ended
    logs: str = ""  # the end of each process's log
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def lines_mentioning(self, needle: str, *, limit: int = 12) -> list[str]:
        """Log lines of every process that mention `needle`, to explain a problem."""
        lines = [
            f"{name}: {line}"
            for name, process in self.processes.items()
            for line in process.log().splitlines()
            if needle in line and "[Q] INFO" not in line
        ]
        return sorted(lines, key=lambda line: line.split(": ", 1)[1])[:limit]


def run_soak(
    *,
    sandbox: SandboxServer,
    start_process: Callable[..., ManagedProcess],
    requester: AbstractBaseUser,
    requests: int,
    seed: int,
    kill_moments: Sequence[float],
    clusters: int = 1,
    submit_limit: int = 20,
    env: dict[str, str] | None = None,
    timeout: float,
) -> Soak:
    """Queue seeded work against a faulty sandbox, SIGKILL a cluster or the dispatcher at
    each of `kill_moments` (seconds from the start, while requests are still generating)
    and restart it, then wait until everything has settled: at most `timeout`, and no longer
    than three leases (or broker re-deliveries) without any progress. `env` overrides
    entries of SOAK_ENV."""
    sandbox.configure(**SOAK_SANDBOX, seed=seed, submit_limit=submit_limit)
    env = {**SOAK_ENV, "KIE_SUBMIT_LIMIT": str(submit_limit), **(env or {})}
    processes = {
        f"qcluster-{number}": start_process("qcluster", **env) for number in range(clusters)
    }
    processes["dispatch"] = start_process("dispatch", **env)
    victims = random.Random(seed)
    broker = get_broker()
    started = time.monotonic()
    soak = Soak(request_ids=queue_requests(requester, count=requests, seed=seed), env=env)
    moments = sorted(kill_moments)
    deadline = started + timeout
    quiet = 3 * max(float(env["DISPATCH_LEASE"]), float(env["Q_RETRY"]))
    changed = started
    while time.monotonic() < deadline and time.monotonic() - changed < quiet:
        if moments and time.monotonic() - started >= moments[0]:
            moments.pop(0)
            if requests_generating(soak.request_ids):
                name = victims.choice(sorted(processes))
                soak.kills.append(time.time())
                processes[name].restart()
        soak.peak_backlog = max(soak.peak_backlog, broker.queue_size())
        pending = pending_work(sandbox)
        if pending != soak.pending:
            soak.pending, changed = pending, time.monotonic()
        if not soak.pending:
            break
        time.sleep(0.5)
    soak.elapsed = time.monotonic() - started
    soak.logs = log_tails(processes)
    soak.processes = processes
    soak.jobs = jobs_run(processes)
    return soak


def jobs_run(processes: dict[str, ManagedProcess]) -> Counter[str]:
    """Count the jobs each cluster finished, by name, from their logs."""
    jobs: Counter[str] = Counter()
    for process in processes.values():
        for line in process.log().splitlines():
            if "Processed 'imagereview.tasks." in line:
                jobs[line.split("imagereview.tasks.", 1)[1].split("'", 1)[0]] += 1
    return jobs


def describe(env: dict[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in sorted(env.items()))


class SandboxAPI:
    """Read the sandbox over HTTP the way any client would, for checks after a run."""

    def __init__(self, sandbox: SandboxServer) -> None:
        key = sandbox.config.api_key
        self._http = httpx.Client(
            base_url=sandbox.url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
        )

    def __enter__(self) -> "SandboxAPI":
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def record(self, task_id: str) -> dict[str, Any]:
        reply = self._http.get(QUERY, params={"taskId": task_id}).json()
        assert reply["code"] == 200, f"recordInfo {task_id}: {reply}"
        return reply["data"]

    def result_bytes(self, url: str) -> bytes:
        """The bytes behind a result URL, through a fresh link (an expired URL answers 410;
        one with the 404-once fault answers 404 the first time)."""
        for _ in range(3):
            fresh = self._http.post("/api/v1/common/download-url", json={"url": url}).json()
            assert fresh["code"] == 200, f"download-url {url}: {fresh}"
            response = self._http.get(fresh["data"])
            if response.status_code == 200:
                return response.content
        raise AssertionError(f"{url} answered HTTP {response.status_code} three times")


@dataclass
class Audit:
    """Every provider task checked against our tables."""

    tasks: list[dict[str, Any]]
    unknowable: dict[str, str] = field(default_factory=dict)  # task id: why no client knew it
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_credits: Decimal = Decimal(0)
    outputs_checked: int = 0


def audit_tasks(sandbox: SandboxServer, *, soak: Soak) -> Audit:
    """Check that every sandbox task is held by a generation (or could not be known), that
    each success is stored once per result URL with the served bytes, and that duplicates
    are marked and costed. Call once every request is final."""
    # The checks read through the API; faults and the query limit would only slow them.
    sandbox.configure(rate_429=0.0, rate_5xx=0.0, rate_455=0.0, query_limit=100_000)
    audit = Audit(tasks=sandbox.tasks)
    holders = {g.provider_task_id: g for g in Generation.objects.exclude(provider_task_id=None)}
    owners = {g.callback_url(): g for g in Generation.objects.all()}
    with SandboxAPI(sandbox) as api:
        for task in audit.tasks:
            task_id = task["taskId"]
            record = api.record(task_id)
            callback_url = json.loads(record["param"]).get("callBackUrl", "")
            owner = owners.get(callback_url)
            holder = holders.get(task_id)
            if holder is None:
                reason = _why_unknowable(task, owner, soak.kills)
                if reason:
                    audit.unknowable[task_id] = reason
                else:
                    received = CallbackReceipt.objects.filter(task_id=task_id, verified=True)
                    audit.problems.append(
                        f"task {task_id} ({task['state']}, {task['credits']} credits, faults "
                        f"{task['faults']}) is held by no generation; it was created for "
                        f"{owner or callback_url or '?'} and {received.count()} authentic "
                        "callbacks named it; the logs say:\n    "
                        + "\n    ".join(soak.lines_mentioning(task_id))
                    )
                continue
            _check_holder(audit, task, holder, owner)
            if task["state"] == "success" and holder.state == G.STORED:
                _check_outputs(audit, api, record, holder)
    for duplicate in Generation.objects.exclude(duplicate_of=None):
        if duplicate.credits is None:
            audit.problems.append(f"duplicate {duplicate} has no credits recorded")
    return audit


def _why_unknowable(task: dict[str, Any], owner: Generation | None, kills: Sequence[float]) -> str:
    faults = set(task["faults"])
    if "drop_callback" not in faults:
        return ""
    if "timeout" in faults:
        return "its create timed out and its callback was dropped"
    created = task["created"] / 1000
    released = owner is not None and owner.events.filter(note__contains="unanswered").exists()
    if released and any(0 <= kill - created <= KILL_WINDOW for kill in kills):
        return (
            "its create was answered just before a kill, its generation was resubmitted as "
            "unanswered, and its callback was dropped"
        )
    return ""


def _check_holder(
    audit: Audit, task: dict[str, Any], holder: Generation, owner: Generation | None
) -> None:
    task_id = task["taskId"]
    if owner is not None and holder.pk != owner.pk and holder.duplicate_of_id != owner.pk:
        audit.problems.append(
            f"task {task_id} was created for {owner} but is held by {holder}, "
            "which is not marked as its duplicate"
        )
    if holder.duplicate_of_id:
        audit.duplicates += 1
        audit.duplicate_credits += holder.credits or 0
    expected_state = G.STORED if task["state"] == "success" else G.FAILED
    if holder.state != expected_state:
        audit.problems.append(
            f"task {task_id} is {task['state']} but {holder} is {holder.state} "
            f"({holder.failure_code}: {holder.failure_message[:200]})"
        )
    if holder.credits is None or holder.credits != Decimal(task["credits"]):
        audit.problems.append(
            f"task {task_id} cost {task['credits']} credits; {holder} records {holder.credits}"
        )


def _check_outputs(
    audit: Audit, api: SandboxAPI, record: dict[str, Any], holder: Generation
) -> None:
    urls = json.loads(record["resultJson"] or "{}").get("resultUrls", [])
    outputs = {asset.index: asset for asset in holder.outputs.filter(kind=Asset.Kind.OUTPUT)}
    if sorted(outputs) != list(range(len(urls))):
        audit.problems.append(f"{holder} has outputs {sorted(outputs)} for {len(urls)} result URLs")
        return
    for index, url in enumerate(urls):
        served = hashlib.sha256(api.result_bytes(url)).hexdigest()
        with outputs[index].file.open("rb") as stored:
            kept = hashlib.sha256(stored.read()).hexdigest()
        if not served == kept == outputs[index].sha256:
            audit.problems.append(
                f"output {index} of {holder}: served {served[:12]}, stored file {kept[:12]}, "
                f"recorded {outputs[index].sha256[:12]}"
            )
        audit.outputs_checked += 1


def soak_figures(soak: Soak, audit: Audit, sandbox: SandboxServer) -> list[tuple[str, object]]:
    """The counts worth reading after a soak, as table rows."""
    tasks = Counter(task["state"] for task in audit.tasks)
    faults = Counter(fault for task in audit.tasks for fault in task["faults"])
    receipts = Counter(CallbackReceipt.objects.values_list("outcome", flat=True))
    stats = sandbox.stats
    rows: list[tuple[str, object]] = [
        ("run time (s)", f"{soak.elapsed:.1f}"),
        ("cluster kills", len(soak.kills)),
        ("peak broker backlog (jobs)", soak.peak_backlog),
        *((f"  jobs run: {job}", n) for job, n in sorted(soak.jobs.items())),
        ("requests", ImageRequest.objects.count()),
        *_counted("  request", ImageRequest.objects.values_list("status", flat=True)),
        ("generations", Generation.objects.count()),
        *_counted("  generation", Generation.objects.values_list("state", flat=True)),
        ("provider tasks", len(audit.tasks)),
        *((f"  task {state}", n) for state, n in sorted(tasks.items())),
        *((f"  fault {fault}", n) for fault, n in sorted(faults.items())),
        ("duplicates kept", audit.duplicates),
        ("  their credits", audit.duplicate_credits),
        (
            "credits recorded",
            sum(
                Generation.objects.exclude(credits=None).values_list("credits", flat=True),
                Decimal(0),
            ),
        ),
        ("credits billed by the sandbox", sum(task["credits"] for task in audit.tasks)),
        ("callbacks sent", sum(task["callbacks_sent"] for task in audit.tasks)),
        ("callbacks received", sum(receipts.values())),
        ("  accepted", receipts.get(CallbackReceipt.Outcome.ACCEPTED, 0)),
        ("  refused", sum(receipts.values()) - receipts.get(CallbackReceipt.Outcome.ACCEPTED, 0)),
        ("createTask calls", stats["calls"].get(CREATE, 0)),
        ("recordInfo calls", stats["calls"].get(QUERY, 0)),
        ("429s answered", sum(stats["answered_429"].values())),
        ("outputs checked against served bytes", audit.outputs_checked),
        ("tasks no client could know", len(audit.unknowable)),
        *((f"  {task_id}", reason) for task_id, reason in sorted(audit.unknowable.items())),
        ("invariant violations", len(audit.problems)),
    ]
    return rows


def _counted(label: str, values: Iterable[str]) -> list[tuple[str, object]]:
    return [(f"{label} {value}", n) for value, n in sorted(Counter(values).items())]


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` (0..1) percentile of `values`, interpolated between ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def most_in_window(moments: Sequence[float], window: float) -> int:
    """The most `moments` that fall in any half-open span [t, t + window)."""
    ordered = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep the lines logged per request, per provider call and per enqueued job out of a
    benchmark's printed figures."""
    names = ("imagereview.actions.requests", "imagereview.sandbox", "django-q")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def print_table(
    title: str, rows: Iterable[Sequence[object]], *, headers: Sequence[str] = ()
) -> None:
    """Print rows of (label, value, ...) under a title: figures right-aligned in columns,
    longer text (a reason, a series) left as it is."""
    rows = [tuple(row) for row in rows]
    if headers:
        rows.insert(0, ("", *headers))
    label_width = max((len(str(row[0])) for row in rows), default=0)
    columns = max((len(row) for row in rows), default=1) - 1
    widths = [
        max((len(str(row[c])) for row in rows if len(row) > c and _is_figure(row[c])), default=0)
        for c in range(1, columns + 1)
    ]
    print(f"\n{title}")
    for label, *values in rows:
        cells = "  ".join(
            f"{value!s:>{width}}" if _is_figure(value) else str(value)
            for value, width in zip(values, widths, strict=False)
        )
        print(f"  {label!s:<{label_width}}  {cells}".rstrip())


def _is_figure(value: object) -> bool:
    return len(str(value)) <= 16
