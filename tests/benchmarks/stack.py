"""The processes a scale benchmark runs apart from the test (the sandbox provider, gunicorn),
the sandbox's knobs set over HTTP, and the CPU each process tree spends."""

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from tests.conftest import ROOT, ManagedProcess

SANDBOX_KEY = "sandbox-key"
# The app's own provider limits, lifted as far as the sandbox's preset lifts its own.
UNBOUNDED = 100_000


class Service(ManagedProcess):
    """A process started from a whole command line (not only `manage.py ...`)."""

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, service: Service, *, timeout: float = 30.0) -> None:
    """Wait until `url` answers at all; fail with the service's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            break
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout:g} s:\n{service.log()[-4000:]}")


@dataclass
class SandboxProcess:
    """The sandbox provider in a process of its own, so that its CPU is counted apart."""

    service: Service
    url: str

    def configure(self, **knobs: Any) -> None:
        reply = httpx.post(f"{self.url}/sandbox/config", json=knobs, timeout=10.0).json()
        assert reply["code"] == 200, f"sandbox refused {knobs}: {reply}"

    def tasks(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/sandbox/tasks", timeout=30.0).json()["data"]

    def stats(self) -> dict[str, dict[str, int]]:
        return httpx.get(f"{self.url}/sandbox/stats", timeout=10.0).json()["data"]

    def record(self, http: httpx.Client, task_id: str) -> dict[str, Any]:
        reply = http.get(
            f"{self.url}/api/v1/jobs/recordInfo",
            params={"taskId": task_id},
            headers={"Authorization": f"Bearer {SANDBOX_KEY}"},
        ).json()
        assert reply["code"] == 200, f"recordInfo {task_id}: {reply}"
        return reply["data"]


def start_sandbox(start_service: Callable[..., Service], **env: str) -> SandboxProcess:
    port = free_port()
    service = start_service(
        "sandbox",
        [sys.executable, "manage.py", "sandbox_provider", "--port", str(port)],
        **env,
    )
    sandbox = SandboxProcess(service, f"http://127.0.0.1:{port}")
    wait_for_http(f"{sandbox.url}/sandbox/config", service)
    return sandbox


def make_sandbox_unbounded(sandbox: SandboxProcess) -> dict[str, str]:
    """Take the provider out of the measurement with the sandbox's "unthrottled" preset (no
    task latency, no rate limits, no faults, a few pictures rendered once). Return the
    environment that lifts the app's own limits to match."""
    sandbox.configure(mode="unthrottled")
    return {"KIE_SUBMIT_LIMIT": str(UNBOUNDED), "KIE_QUERY_LIMIT": str(UNBOUNDED)}


@dataclass
class Web:
    service: Service
    url: str


def start_web(
    start_service: Callable[..., Service],
    *,
    workers: int,
    settings_module: str = "imagereview.settings",
    **env: str,
) -> Web:
    """gunicorn with sync workers, as in production, each keeping its database connection."""
    port = free_port()
    service = start_service(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "imagereview.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ],
        DJANGO_SETTINGS_MODULE=settings_module,
        DB_CONN_MAX_AGE="60",
        **env,
    )
    web = Web(service, f"http://127.0.0.1:{port}")
    wait_for_http(f"{web.url}/", service)
    return web


def tree_cpu(root: psutil.Process) -> float:
    """CPU seconds a process and all its descendants have used, those already reaped included
    (they are counted in their parent's children times)."""
    total = 0.0
    for process in [root, *_children(root)]:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def servers_named(name: str) -> list[psutil.Process]:
    """The top processes of a server started outside the test (postgres, redis-server): those
    named `name` whose parent is not."""
    roots = []
    for process in psutil.process_iter(["name"]):
        try:
            parent = process.parent()
            if process.info["name"] == name and (parent is None or parent.name() != name):
                roots.append(process)
        except psutil.NoSuchProcess:
            continue
    return roots


@dataclass
class CpuMeter:
    """CPU seconds each named process tree spends between start() and stop()."""

    trees: dict[str, list[psutil.Process]]
    # Counted without their descendants: the test process, whose children are the services.
    alone: dict[str, psutil.Process] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    _began: float = 0.0

    @classmethod
    def of(
        cls,
        pids: dict[str, int],
        *,
        servers: dict[str, str] | None = None,
        alone: dict[str, int] | None = None,
    ) -> "CpuMeter":
        """Meter the trees rooted at `pids`, servers found by process name, and the `alone`
        processes by themselves."""
        trees = {name: [psutil.Process(pid)] for name, pid in pids.items()}
        for label, process_name in (servers or {}).items():
            roots = servers_named(process_name)
            if roots:
                trees[label] = roots
        return cls(trees, {name: psutil.Process(pid) for name, pid in (alone or {}).items()})

    @property
    def names(self) -> list[str]:
        return [*self.trees, *self.alone]

    def _read(self) -> dict[str, float]:
        figures = {name: sum(map(tree_cpu, roots)) for name, roots in self.trees.items()}
        for name, process in self.alone.items():
            times = process.cpu_times()
            figures[name] = times.user + times.system
        return figures

    def start(self) -> None:
        self.started = self._read()
        self._began = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._began
        ended = self._read()
        self.spent = {name: ended[name] - self.started[name] for name in self.names}

    def share(self, name: str) -> float:
        """Percent of one core, averaged over the metered time."""
        return 100 * self.spent[name] / self.wall if self.wall else 0.0

    @property
    def total(self) -> float:
        return sum(self.spent.values())
