import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from imagereview.providers.kie import KieClient
from imagereview.providers.sandbox import SandboxConfig, SandboxServer
from imagereview.roles import REQUESTERS, REVIEWERS

ROOT = Path(__file__).resolve().parent.parent
FAST_LATENCY = {"waiting": 0.05, "queuing": 0.05, "generating": 0.1}


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing() -> None:
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def enqueued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Jobs enqueued during a test, kept instead of sent, unless the test runs a cluster."""
    jobs: list[tuple] = []
    if request.node.get_closest_marker("cluster") is None:
        monkeypatch.setattr(
            "imagereview.jobs.async_task", lambda func, *args, **kwargs: jobs.append((func, *args))
        )
    return jobs


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path, settings) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def sandbox(settings) -> Iterator[SandboxServer]:
    """A real sandbox provider over HTTP, which the app's settings point at."""
    server = SandboxServer(SandboxConfig(latency=dict(FAST_LATENCY))).start()
    settings.KIE_API_BASE = settings.KIE_UPLOAD_BASE = server.url
    settings.KIE_API_KEY = "sandbox-key"
    settings.USE_SANDBOX = True
    settings.RESULT_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    yield server
    server.stop()


@pytest.fixture
def kie(sandbox: SandboxServer) -> Iterator[KieClient]:
    with KieClient(api_base=sandbox.url, upload_base=sandbox.url, api_key="sandbox-key") as client:
        yield client


def make_user(username: str, *groups: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username, password=f"{username}-password")
    user.is_superuser = user.is_staff = superuser
    user.save()
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def requester(db) -> User:
    return make_user("alice", REQUESTERS)


@pytest.fixture
def reviewer(db) -> User:
    return make_user("rita", REVIEWERS)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def requester_client(requester: User) -> Client:
    return client_for(requester)


@pytest.fixture
def reviewer_client(reviewer: User) -> Client:
    return client_for(reviewer)


def database_url() -> str:
    """The URL of the database this test run uses, for processes started by tests."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Cluster:
    """A real `manage.py qcluster` process on the test database and broker."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def cluster_env(live_server, sandbox: SandboxServer, settings, tmp_path: Path) -> dict[str, str]:
    settings.PUBLIC_BASE_URL = live_server.url
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "KIE_API_BASE": sandbox.url,
        "KIE_UPLOAD_BASE": sandbox.url,
        "PUBLIC_BASE_URL": live_server.url,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "Q_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }
    env.pop("KIE_API_KEY", None)
    return env


@pytest.fixture
def start_cluster(cluster_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start clusters on demand (with extra environment); stop them all at the end."""
    from django_q.brokers import get_broker

    get_broker().purge_queue()
    clusters: list[Cluster] = []

    def start(**extra_env: str) -> Cluster:
        log_path = tmp_path / f"cluster-{len(clusters)}.log"
        cluster = Cluster({**cluster_env, **extra_env}, log_path)
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll `condition` until it returns something truthy; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message or condition}")
