"""The production profile, started for real as docs/deploy describes it: migrate, collectstatic
and the deploy checks, then gunicorn with its config module, the django-q2 cluster and the
dispatcher as their own processes, on PostgreSQL, Redis and an S3 bucket (moto), against the
sandbox provider. One request goes from the form to review over HTTP, and the reviewer gets
the output through the signed link the app redirects to.

The web process runs with DJANGO_ENV=production. The cluster and the dispatcher run with the
same database, broker and bucket but without DJANGO_ENV: production refuses results from
loopback addresses, and the sandbox serves its results from 127.0.0.1.
"""

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from tests.conftest import ROOT, ManagedProcess, wait_for
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, free_port

pytestmark = pytest.mark.cluster

ADMIN_URL = os.environ.get("SMOKE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
# Settings each process must not inherit from the test run's own environment.
INHERITED_NOT = (
    "DEBUG",
    "DJANGO_ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "KIE_API_KEY",
    "SECRET_KEY",
    # Set by the browser tests for their own process; the deploy check refuses it.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)

CHECK_AND_CREATE_USERS = """
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from imagereview.roles import REQUESTERS, REVIEWERS
call_command("check", deploy=True, fail_level="ERROR")
for name, group in (("alice", REQUESTERS), ("bob", REQUESTERS), ("rita", REVIEWERS)):
    user = User.objects.create_user(name, password=name + "-smoke-password")
    user.groups.add(Group.objects.get_or_create(name=group)[0])
"""


class GunicornProcess(ManagedProcess):
    """gunicorn with the config module, as the systemd unit and the Procfile start it."""

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:imagereview.gunicorn_conf"]
            + ["imagereview.wsgi"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Browser:
    """A browser reaching the app through a TLS-terminating proxy (nginx): each request says
    it came over HTTPS, so the app's secure cookies are sent back over this plain link."""

    def __init__(self, base_url: str) -> None:
        self.origin = "https://" + base_url.split("://", 1)[1]
        self.http = httpx.Client(
            base_url=base_url,
            headers={"X-Forwarded-Proto": "https"},
            timeout=15,
            event_hooks={"response": [self._keep_cookies]},
        )

    def _keep_cookies(self, response: httpx.Response) -> None:
        for cookie in self.http.cookies.jar:
            cookie.secure = False

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post_form(self, path: str, data: dict) -> httpx.Response:
        page = self.http.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token on {path}: {page.status_code}"
        return self.http.post(
            path,
            data={"csrfmiddlewaretoken": token[1], **data},
            headers={"Origin": self.origin, "Referer": self.origin + path},
        )

    def log_in(self, username: str) -> None:
        response = self.post_form(
            "/login/", {"username": username, "password": f"{username}-smoke-password"}
        )
        assert response.status_code == 302, response.text[:500]


@pytest.fixture
def smoke_database() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, dropped afterwards."""
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is unreachable at {ADMIN_URL}: {error}")
    name = f"imagereview_smoke_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def smoke_redis() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis is unreachable at {REDIS_URL}: {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def environment(smoke_database, smoke_redis, s3_server, sandbox, tmp_path: Path) -> dict:
    """What env.example lists, filled in for this machine: one dict per kind of process."""
    bucket = f"smoke-media-{os.getpid()}"
    s3_server.client().create_bucket(Bucket=bucket)
    port = free_port()
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in INHERITED_NOT and not key.startswith(("AWS_", "PUBLISH_", "GUNICORN_"))
    }
    shared = inherited | {
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "smoke-" + "k" * 50,
        "DATABASE_URL": smoke_database,
        "DB_CONN_MAX_AGE": "60",
        "REDIS_URL": smoke_redis,
        "Q_CLUSTER_NAME": f"smoke{os.getpid()}",
        "Q_WORKERS": "2",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "KIE_API_BASE": sandbox.url,
        "KIE_UPLOAD_BASE": sandbox.url,
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": s3_server.url,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_QUERYSTRING_EXPIRE": "300",
        "C2PA_LOCAL_DIR": str(tmp_path / "c2pa"),
        "LOG_LEVEL": "INFO",
    }
    web = shared | {
        "DJANGO_ENV": "production",
        "KIE_API_KEY": "sandbox-key",
        "RESULT_ALLOWED_HOSTS": "127.0.0.1",
        # nginx answers plain HTTP with its own redirect; the provider's callbacks come here
        # over HTTP from this machine.
        "SECURE_SSL_REDIRECT": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
    }
    return {"web": web, "worker": shared, "url": f"http://127.0.0.1:{port}", "bucket": bucket}


def manage(env: dict, *command: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {' '.join(command)}:\n{result.stderr}"
    return result.stdout + result.stderr


def test_a_request_goes_to_review_on_the_production_profile(environment, s3_server):
    web_env, worker_env, url = environment["web"], environment["worker"], environment["url"]
    bucket = environment["bucket"]
    # The release steps: collectstatic needs no database, so it runs beside the migrations.
    collecting = subprocess.Popen(
        [sys.executable, "manage.py", "collectstatic", "--no-input"],
        cwd=ROOT,
        env=web_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    manage(web_env, "migrate", "--no-input")
    assert collecting.wait(timeout=120) == 0, collecting.stderr.read()
    manage(web_env, "shell", "-c", CHECK_AND_CREATE_USERS)

    log_dir = Path(web_env["VAR_DIR"])
    web = GunicornProcess([], web_env, log_dir / "web.log")
    cluster = ManagedProcess(["qcluster"], worker_env, log_dir / "cluster.log")
    dispatcher = ManagedProcess(["dispatch"], worker_env, log_dir / "dispatch.log")
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"{url}/login/", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(serving, timeout=20, message="gunicorn to answer")
        assert "Using worker: sync" in web.log()
        assert web.log().count("Booting worker") == 2

        requester = Browser(url)
        login_page = requester.get("/login/")
        assert login_page.headers["Strict-Transport-Security"].startswith("max-age=")
        stylesheet = re.search(r'href="(/static/[^"]+\.css)"', login_page.text)
        assert stylesheet, "the login page links no stylesheet"
        # The manifest's hashed name, served by whitenoise from what collectstatic gathered.
        assert re.search(r"\.[0-9a-f]{12}\.css$", stylesheet[1]), stylesheet[1]
        css = requester.get(stylesheet[1])
        assert css.status_code == 200
        assert "immutable" in css.headers["Cache-Control"]

        requester.log_in("alice")
        created = requester.post_form(
            "/requests/new/",
            {
                "prompt": "a lighthouse on a cliff at dusk",
                "aspect_ratio": "1:1",
                "resolution": "1K",
                "output_format": "png",
                "variants": "1",
                "required_approvals": "1",
                "approval_quota": "1",
            },
        )
        assert created.status_code == 302, created.text[:2000]
        request_id = int(re.search(r"/requests/(\d+)/", created.headers["Location"])[1])

        def in_review() -> dict | None:
            detail = requester.get(f"/api/v1/requests/{request_id}").json()
            return detail if detail["status"] == "in_review" else None

        detail = wait_for(in_review, timeout=40, interval=0.3, message="the request in review")
        (output,) = detail["outputs"]

        reviewer = Browser(url)
        reviewer.log_in("rita")
        page = reviewer.get(f"/review/{request_id}/")
        assert page.status_code == 200
        policy = page.headers["Content-Security-Policy"]
        assert re.search(rf"img-src 'self' {re.escape(s3_server.url)}(;|$)", policy), policy

        redirect = reviewer.get(f"/assets/{output['id']}/file/")
        assert redirect.status_code == 302
        assert redirect.headers["Cache-Control"].startswith("private")
        link = redirect.headers["Location"]
        assert link.startswith(f"{s3_server.url}/{bucket}/outputs/")
        served = httpx.get(link, timeout=10)
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "image/png"
        assert served.content.startswith(b"\x89PNG")
        key = unquote(urlsplit(link).path).removeprefix(f"/{bucket}/")
        stored = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(served.content).digest() == hashlib.sha256(stored).digest()

        # Another requester gets nothing, not even the link.
        other = Browser(url)
        other.log_in("bob")
        refused = other.get(f"/assets/{output['id']}/file/")
        assert refused.status_code == 404
        assert "Location" not in refused.headers
    except BaseException:
        for process in (web, cluster, dispatcher):
            sys.stderr.write(f"--- {process.log_path.name}\n{process.log()[-4000:]}\n")
        raise
    finally:
        for process in (web, cluster, dispatcher):
            process.stop()
