"""What the sandbox costs per task: its own CPU time for one createTask, the callback POST,
one recordInfo and the result download (the app's path), in its unthrottled mode beside the
default knobs (with latency and limits taken out of the way), measured in the same run.

The sandbox runs in its own process so that only its CPU is counted; the client and the
callback receiver run here.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from tests.benchmarks.support import print_table

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]
TASKS = 300
# Tasks run before measuring: imports, fonts, the first connections and (unthrottled) the
# rendering of most of its shared pictures are not per task.
WARM_UP = 64
CONCURRENCY = 8
KEY = "sandbox-key"
# The default knobs, with only what would stop a run of TASKS tasks taken away.
BASELINE = {
    "latency": {"waiting": 0, "queuing": 0, "generating": 0},
    "submit_limit": 100_000,
    "query_limit": 100_000,
}
UNTHROTTLED = {"mode": "unthrottled"}
# Serve as the sandbox_provider command does: its log at INFO, written somewhere.
SERVE = """
import json, logging, os, sys
from imagereview.providers.sandbox import SandboxServer
logger = logging.getLogger("imagereview.sandbox")
logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))
logger.setLevel(logging.INFO)
logger.propagate = False
server = SandboxServer()
server.configure(**json.loads(sys.argv[1]))
print(server.url, flush=True)
server.serve_forever()
"""


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Callbacks"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        self.server.arrived(json.loads(body)["data"]["taskId"])

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Callbacks(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.received: set[str] = set()
        self.changed = threading.Condition()

    def arrived(self, task_id: str) -> None:
        with self.changed:
            self.received.add(task_id)
            self.changed.notify_all()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # The sandbox closes its kept-alive connections when it stops.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def wait_for(self, task_id: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: task_id in self.received, timeout)


@contextmanager
def _sandbox_process(knobs: dict) -> Iterator[tuple[str, psutil.Process]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, json.dumps(knobs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(10)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _one_task(client: httpx.Client, callbacks: _Callbacks, number: int) -> None:
    callback_url = f"http://127.0.0.1:{callbacks.server_address[1]}/callback"
    body = {
        "model": "nano-banana-pro",
        "callBackUrl": callback_url,
        "input": {"prompt": f"a lighthouse at dusk, take {number}", "resolution": "1K"},
    }
    task_id = client.post("/api/v1/jobs/createTask", json=body).json()["data"]["taskId"]
    # As the app does: the callback wakes it, recordInfo says what happened.
    assert callbacks.wait_for(task_id, timeout=60), f"no callback for {task_id}"
    data = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()["data"]
    assert data["state"] == "success", data
    [url] = json.loads(data["resultJson"])["resultUrls"]
    assert client.get(url).status_code == 200


def _measure(knobs: dict) -> dict[str, float]:
    callbacks = _Callbacks()
    threading.Thread(target=callbacks.serve_forever, daemon=True).start()
    try:
        with _sandbox_process(knobs) as (url, process):
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    run = lambda n: _one_task(client, callbacks, n)  # noqa: E731
                    list(pool.map(run, range(-WARM_UP, 0)))
                    cpu_before, started = _cpu_seconds(process), time.perf_counter()
                    list(pool.map(run, range(TASKS)))
                    elapsed = time.perf_counter() - started
                cpu = _cpu_seconds(process) - cpu_before
    finally:
        callbacks.shutdown()
        callbacks.server_close()
    return {"cpu_ms": cpu / TASKS * 1000, "tasks_per_s": TASKS / elapsed}


def test_unthrottled_sandbox_costs_little_cpu_per_task():
    baseline = _measure(BASELINE)
    unthrottled = _measure(UNTHROTTLED)
    print_table(
        f"Sandbox CPU per task: {TASKS} 1K PNG tasks after {WARM_UP}, {CONCURRENCY} at a time "
        "(create, callback, recordInfo, download)",
        [
            (
                "sandbox CPU per task (ms)",
                f"{baseline['cpu_ms']:.1f}",
                f"{unthrottled['cpu_ms']:.1f}",
            ),
            (
                "tasks per second, end to end",
                f"{baseline['tasks_per_s']:.1f}",
                f"{unthrottled['tasks_per_s']:.1f}",
            ),
        ],
        headers=("default knobs", "unthrottled"),
    )
    assert unthrottled["cpu_ms"] < baseline["cpu_ms"] / 2
