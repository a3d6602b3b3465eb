import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import hypothesis
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client

from imagereview.providers.kie import KieClient
from imagereview.providers.sandbox import SandboxConfig, SandboxServer
from imagereview.roles import REQUESTERS, REVIEWERS

ROOT = Path(__file__).resolve().parent.parent
FAST_LATENCY = {"waiting": 0.05, "queuing": 0.05, "generating": 0.1}


# The suite's fuzz tests try the same examples on every run, so that a red build is one
# anyone can repeat; `make fuzz` (FUZZ_EXAMPLES set) searches afresh and much further.
hypothesis.settings.register_profile("suite", derandomize=True)
hypothesis.settings.register_profile("search", derandomize=False)
hypothesis.settings.load_profile("search" if os.environ.get("FUZZ_EXAMPLES") else "suite")


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing() -> None:
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def waiting_jobs(count: int) -> SimpleNamespace:
    """A stand-in broker with `count` jobs waiting."""
    return SimpleNamespace(queue_size=lambda: count)


@pytest.fixture(autouse=True)
def enqueued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Jobs enqueued during a test, kept instead of sent, unless the test runs a cluster."""
    jobs: list[tuple] = []
    monkeypatch.setattr("imagereview.jobs._brokers", {})
    if request.node.get_closest_marker("cluster") is None:
        monkeypatch.setattr(
            "imagereview.jobs.async_task", lambda func, *args, **kwargs: jobs.append((func, *args))
        )
        # Kept jobs never reach the broker, which holds nothing of this test's.
        monkeypatch.setattr("imagereview.jobs.get_broker", lambda: waiting_jobs(0))
    return jobs


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings) -> None:
    """Start each test with no provider call reserved: Redis, unlike the database, keeps
    reservations from one test to the next."""
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        stale = list(client.scan_iter(f"{settings.Q_CLUSTER['name']}:rate:*"))
        if stale:
            client.delete(*stale)
        client.close()


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


class ManagedProcess:
    """A `manage.py` process (qcluster, dispatch) on the test database, in its own session."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", *self.command],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and every worker it started, mid-whatever they were doing."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.process = self._spawn()

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        self.kill()
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
        "PUBLISH_ROOT": str(settings.PUBLISH_ROOT),
        "C2PA_LOCAL_DIR": str(settings.C2PA_LOCAL_DIR),
        "Q_WORKERS": "2",
        "LOG_LEVEL": "INFO",
        # As runstack runs the cluster: one job at a time per process, connections kept.
        "DB_CONN_MAX_AGE": "60",
    }
    env.pop("KIE_API_KEY", None)
    return env


@pytest.fixture
def start_process(cluster_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start `manage.py` processes on demand (with extra environment); stop them at the end."""
    from django_q.brokers import get_broker

    get_broker().purge_queue()
    started: list[ManagedProcess] = []

    def start(*command: str, **extra_env: str) -> ManagedProcess:
        log_path = tmp_path / f"{command[0]}-{len(started)}.log"
        process = ManagedProcess(list(command), {**cluster_env, **extra_env}, log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def start_cluster(start_process) -> Callable[..., ManagedProcess]:
    """Start the background half as runstack does: a cluster and the dispatcher that sends it
    due work (new requests' creates among it). Return the cluster's process."""

    def start(**extra_env: str) -> ManagedProcess:
        cluster = start_process("qcluster", **extra_env)
        start_process("dispatch", **extra_env)
        return cluster

    return start


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll `condition` until it returns something truthy; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message or condition}")


@pytest.fixture(autouse=True, scope="session")
def c2pa_local_signer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local test signer for the whole run, outside var/."""
    from django.conf import settings

    settings.C2PA_LOCAL_DIR = tmp_path_factory.mktemp("c2pa")
    return settings.C2PA_LOCAL_DIR


@pytest.fixture(autouse=True)
def publish_root(tmp_path: Path, settings) -> Path:
    """The local publish target of each test, in its own folder."""
    root = tmp_path / "published"
    storages = {**settings.STORAGES}
    storages["publish-local"] = {
        **storages["publish-local"],
        "OPTIONS": {**storages["publish-local"]["OPTIONS"], "location": root},
    }
    settings.STORAGES = storages
    settings.PUBLISH_ROOT = root
    return root


@pytest.fixture(scope="session")
def s3_server() -> Iterator:
    from tests.s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_target(s3_server, settings, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the S3 server, configured as the publish target "s3"."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"publish-{name}-{os.getpid()}"
    s3_server.client().create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "publish-s3": s3_server.storage_settings(bucket)}
    settings.PUBLISH_TARGETS = [*settings.PUBLISH_TARGETS, "s3"]
    return bucket


@pytest.fixture
def webhook_receiver() -> Iterator:
    """A real webhook receiver on 127.0.0.1 that verifies every signature it gets."""
    from tests.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp_server(settings) -> Iterator:
    """A real SMTP server on 127.0.0.1, which Django's SMTP backend sends to."""
    from tests.smtp_server import SMTPServer

    server = SMTPServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.stop()
