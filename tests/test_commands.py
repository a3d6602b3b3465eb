"""Management commands: the demo accounts and the stack that `make run` starts."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from imagereview.roles import is_reviewer
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_seed_demo_creates_the_three_accounts_and_says_how_to_log_in(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")  # safe to run again
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8000/" in out and "reviewer-demo" in out
    users = {u.username: u for u in User.objects.all()}
    assert set(users) == {"requester", "reviewer", "admin"}
    assert users["admin"].is_superuser and users["admin"].check_password("admin-demo")
    assert is_reviewer(users["reviewer"]) and not is_reviewer(users["requester"])


def test_seed_demo_refuses_the_production_profile(db, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="not for production"):
        call_command("seed_demo")
    assert not User.objects.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runstack_serves_web_and_sandbox_and_ctrl_c_stops_everything(tmp_path):
    web, sandbox = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "KIE_API_KEY", "KIE_API_BASE")
    }
    env |= {"VAR_DIR": str(tmp_path), "SANDBOX_PORT": str(sandbox), "Q_WORKERS": "1"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    stack = subprocess.Popen(
        [*manage, "runstack", "--addr", f"127.0.0.1:{web}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a shell starts a background job: with SIGINT ignored, which runstack must undo.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:

        def up(url: str) -> bool:
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: up(f"http://127.0.0.1:{web}/login/"), timeout=60, message="the web")
        wait_for(lambda: up(f"http://127.0.0.1:{sandbox}/sandbox/config"), message="the sandbox")
        time.sleep(1)  # let the cluster finish starting
        stack.send_signal(signal.SIGINT)
        out, _ = stack.communicate(timeout=40)
    finally:
        if stack.poll() is None:
            stack.kill()
            # Its children run in sessions of their own: stop them too, whatever failed.
            for pid in processes_with_env(f"VAR_DIR={tmp_path}"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert stack.returncode == 0, out
    assert "Stopped web, cluster, dispatcher and sandbox." in out
    assert "Q Cluster" in out and "has stopped" in out
    assert "Dispatcher stopped" in out
    for port in (web, sandbox):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    assert processes_with_env(f"VAR_DIR={tmp_path}") == []


def processes_with_env(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
