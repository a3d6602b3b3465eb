"""Run web, cluster, dispatcher and (without a Kie key) the sandbox together until Ctrl-C."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

STOP_GRACE = 20.0


def _relay(name: str, stream: IO[str], lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            sys.stdout.write(f"{name:>8} | {line}")
            sys.stdout.flush()


def _environment(name: str) -> dict[str, str]:
    """The child's environment: the cluster and the dispatcher keep their database
    connections (one job at a time each); the threaded web server does not."""
    environment = dict(os.environ)
    if name in ("cluster", "dispatch"):
        environment.setdefault("DB_CONN_MAX_AGE", "60")
    return environment


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run web, cluster, dispatcher and sandbox provider in the foreground."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where the web server listens")

    def handle(self, *args: object, addr: str, **options: object) -> None:
        commands = {
            "web": ["runserver", addr, "--noreload"],
            "cluster": ["qcluster"],
            "dispatch": ["dispatch"],
        }
        if settings.USE_SANDBOX:
            commands = {"sandbox": ["sandbox_provider"], **commands}
        # Explicitly, for SIGINT too: a shell that starts us in the background ignores it.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        lock = threading.Lock()
        children: dict[str, subprocess.Popen] = {}
        exited = ""
        try:
            for name, command in commands.items():
                # Each child gets its own session: Ctrl-C reaches only this process, which
                # stops each child through its main process so the cluster winds down in order.
                child = subprocess.Popen(
                    [sys.executable, "manage.py", *command],
                    env=_environment(name),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    start_new_session=True,
                )
                children[name] = child
                threading.Thread(
                    target=_relay, args=(name, child.stdout, lock), daemon=True
                ).start()
            while not exited:
                time.sleep(0.2)
                exited = next((n for n, c in children.items() if c.poll() is not None), "")
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(children)
        if exited:
            raise CommandError(f"{exited} exited with code {children[exited].returncode}")

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        self.stdout.write("Stopping ...")
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop within {STOP_GRACE:.0f} s; killing it")
            # Sweep anything the child left behind in its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        self.stdout.write("Stopped web, cluster, dispatcher and sandbox.")
