"""Create-request latency through the API: one client, then 20 at once, against a real web
server in its own process, on the embedded defaults (a SQLite file and the ORM broker) and on
PostgreSQL with the Redis broker, measured in one run.

The server runs the production profile (`DJANGO_ENV=production`, DEBUG off, HTTPS behind a
proxy: the clients send the proxy's `X-Forwarded-Proto`) with `manage.py runserver --noreload`,
threaded: what `runstack` starts for the web, as gunicorn is not among the dependencies. No
cluster runs: a create writes the request and its generations and enqueues their submission.
Each setup gets a scratch database of its own, migrated and filled with users and tokens by
`manage.py`.

Each client is a thread with its own token that sends its creates back to back, each with a
fresh Idempotency-Key: once opening a new connection per create (as the command-line client
does: one command, one connection), once over one kept-alive connection (a long-running
pipeline). Over a kept-alive connection the runserver's answers arrive some 40 ms later (its
headers and body leave in separate writes, and the second waits for the client's delayed
acknowledgement): measuring both keeps that idle time apart from the server's own work.
"""

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.benchmarks.support import percentile, print_table
from tests.conftest import ROOT, ManagedProcess

pytestmark = pytest.mark.benchmark

CLIENTS = 20
# Within the default limit of 120 calls a minute per token: no create is refused with a 429.
SINGLE_CREATES = 100
CREATES_EACH = 25
WARMUP_CREATES = 3
ASPECT_RATIOS = ("1:1", "4:3", "3:2", "16:9")
GOAL_RATIO = 3.0
WEB_SERVER = "manage.py runserver --noreload (threaded, one process)"
# What the TLS-terminating proxy in front of a production web server adds to each request.
BEHIND_TLS_PROXY = {"X-Forwarded-Proto": "https"}

# Run by `manage.py shell -c` in the scratch database: one requester and token per client.
PROVISION = """
import json
from django.contrib.auth.models import Group, User
from imagereview.actions.tokens import issue_token
from imagereview.roles import REQUESTERS
group, _ = Group.objects.get_or_create(name=REQUESTERS)
tokens = []
for number in range({count}):
    user = User.objects.create_user(f"bench-{{number}}", password=None)
    user.groups.add(group)
    tokens.append(issue_token(user=user, name="benchmark", scopes=["read", "request"])[1])
print("TOKENS " + json.dumps(tokens))
"""
EXCEPTION_LINE = re.compile(r"^[\w.]+(?:Error|Exception): .*$", re.MULTILINE)
COUNT_CREATED = """
from imagereview.models import ImageRequest
print("CREATED", ImageRequest.objects.filter(pk__in={ids}).count())
"""


@dataclass
class Round:
    """What the clients of one round saw: a latency per create, and every failure."""

    clients: int
    keep_alive: bool
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, 201s only
    errors: list[str] = field(default_factory=list)
    created_ids: list[int] = field(default_factory=list)
    server_cpu: float = 0.0  # seconds the web process spent on the CPU during the round

    @property
    def calls(self) -> int:
        return len(self.latencies) + len(self.errors)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` with `env`; return what it printed, failing loudly if it failed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def printed(output: str, mark: str) -> str:
    """The rest of the line of `output` that starts with `mark`."""
    return next(line for line in output.splitlines() if line.startswith(mark + " "))[
        len(mark) + 1 :
    ]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def web_server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, ManagedProcess]]:
    """The app's web server on a free port; yields its URL once it answers."""
    port = free_port()
    server = ManagedProcess(["runserver", f"127.0.0.1:{port}", "--noreload"], env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                schema = httpx.get(
                    f"{url}/api/v1/openapi.json", headers=BEHIND_TLS_PROXY, timeout=5
                )
                if schema.status_code == 200:
                    break
            assert server.process.poll() is None, f"the web server exited:\n{server.log()}"
            assert time.monotonic() < deadline, f"the web server never answered:\n{server.log()}"
            time.sleep(0.2)
        yield url, server
    finally:
        server.stop()


def create_body(number: int) -> dict:
    return {
        "prompt": f"a lighthouse at dusk, oil painting, take {number}",
        "aspect_ratio": ASPECT_RATIOS[number % len(ASPECT_RATIOS)],
        "variants": 2,
    }


def send_creates(
    url: str, token: str, count: int, *, keep_alive: bool, start: threading.Barrier, into: Round
) -> None:
    """`count` creates, one after another, each with its own Idempotency-Key; the first
    WARMUP_CREATES warm the server and the token, unmeasured."""
    headers = {"Authorization": f"Bearer {token}", **BEHIND_TLS_PROXY}
    kept = httpx.Client(base_url=url, headers=headers, timeout=60.0)
    for number in range(-WARMUP_CREATES, count):
        if number == 0:
            start.wait()
        client = kept if keep_alive else httpx.Client(base_url=url, headers=headers, timeout=60.0)
        began = time.perf_counter()
        try:
            response = client.post(
                "/api/v1/requests",
                json=create_body(number),
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        except httpx.HTTPError as error:
            into.errors.append(f"{type(error).__name__}: {error}")
            continue
        finally:
            if client is not kept:
                client.close()
        elapsed = time.perf_counter() - began
        if response.status_code != 201:
            into.errors.append(f"HTTP {response.status_code}: {response.text[:300]}")
            continue
        into.created_ids.append(response.json()["id"])
        if number >= 0:
            into.latencies.append(elapsed)
    kept.close()


def run_round(
    url: str, server: ManagedProcess, tokens: list[str], creates_each: int, *, keep_alive: bool
) -> Round:
    """All clients at once, one token each; the clock starts once every one is warm."""
    measured = Round(clients=len(tokens), keep_alive=keep_alive)
    start = threading.Barrier(len(tokens) + 1)
    clients = [
        threading.Thread(
            target=send_creates,
            args=(url, token, creates_each),
            kwargs={"keep_alive": keep_alive, "start": start, "into": measured},
        )
        for token in tokens
    ]
    for client in clients:
        client.start()
    start.wait()
    cpu_before = cpu_seconds(server.process.pid)
    began = time.perf_counter()
    for client in clients:
        client.join()
    measured.seconds = time.perf_counter() - began
    measured.server_cpu = cpu_seconds(server.process.pid) - cpu_before
    return measured


def server_env(tmp_path: Path, name: str, database_url: str, redis_url: str = "") -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "KIE_API_KEY")
    }
    var_dir = tmp_path / name
    var_dir.mkdir()
    env.update(
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        # Never called: no cluster runs to submit what the creates enqueue.
        KIE_API_KEY="benchmark-no-provider-calls",
        VAR_DIR=str(var_dir),
        MEDIA_ROOT=str(var_dir / "media"),
        DATABASE_URL=database_url,
        Q_CLUSTER_NAME=f"bench-api-{os.getpid()}",
        LOG_LEVEL="WARNING",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@dataclass
class Setup:
    """One stack measured: per connection policy, one client's round and then the
    concurrent clients' round."""

    name: str
    rounds: dict[bool, tuple[Round, Round]]  # keep_alive: (single, concurrent)
    stored: int  # the created ids found in the database afterwards
    server_errors: Counter[str]  # the exceptions the web server logged, by message

    @property
    def all_rounds(self) -> list[Round]:
        return [measured for pair in self.rounds.values() for measured in pair]


def measure(env: dict[str, str], name: str, tmp_path: Path) -> Setup:
    manage(env, "migrate", "--no-input", "-v", "0")
    provision = PROVISION.format(count=2 * (1 + CLIENTS))
    tokens = json.loads(printed(manage(env, "shell", "-c", provision), "TOKENS"))
    rounds = {}
    with web_server(env, tmp_path / f"web-{name}.log") as (url, server):
        for keep_alive in (False, True):
            # Fresh tokens per round: each stays within its rate limit.
            mine, tokens = tokens[: 1 + CLIENTS], tokens[1 + CLIENTS :]
            single = run_round(url, server, mine[:1], SINGLE_CREATES, keep_alive=keep_alive)
            concurrent = run_round(url, server, mine[1:], CREATES_EACH, keep_alive=keep_alive)
            rounds[keep_alive] = (single, concurrent)
        logged = server.log()
    ids = [pk for pair in rounds.values() for measured in pair for pk in measured.created_ids]
    found = int(printed(manage(env, "shell", "-c", COUNT_CREATED.format(ids=ids)), "CREATED"))
    return Setup(name, rounds, found, Counter(EXCEPTION_LINE.findall(logged)))


def postgres_admin_url() -> str:
    """The PostgreSQL server of the test run when it uses one, else the local default."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A fresh PostgreSQL database for one setup, dropped afterwards; yields its URL."""
    import psycopg

    admin_url = postgres_admin_url()
    name = f"bench_api_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_and_redis_unreachable(redis_url: str) -> str:
    """Why the PostgreSQL + Redis setup cannot run here, or "" when it can."""
    import psycopg
    import redis

    try:
        psycopg.connect(postgres_admin_url(), connect_timeout=5).close()
    except psycopg.Error as error:
        return f"PostgreSQL at {postgres_admin_url()} is not reachable ({error})"
    try:
        redis.Redis.from_url(redis_url, socket_timeout=5).ping()
    except redis.RedisError as error:
        return f"Redis at {redis_url} is not reachable ({error})"
    return ""


def forget_redis_keys(redis_url: str, cluster_name: str) -> None:
    """Drop the queued jobs and rate windows this run left in Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    stale = list(client.scan_iter(f"*{cluster_name}*"))
    if stale:
        client.delete(*stale)
    client.close()


def report_rows(setup: Setup) -> list[tuple]:
    rows = []
    for keep_alive, (single, concurrent) in setup.rounds.items():
        connection = "kept-alive connection" if keep_alive else "new connection per create"
        for measured in (single, concurrent):
            ms = [latency * 1000 for latency in measured.latencies]
            rows.append(
                (
                    f"{setup.name}, {connection}, {measured.clients} client"
                    + ("s" if measured.clients > 1 else ""),
                    measured.calls,
                    f"{percentile(ms, 0.5):.1f}",
                    f"{percentile(ms, 0.95):.1f}",
                    f"{max(ms, default=float('nan')):.1f}",
                    f"{measured.calls / measured.seconds:.1f}",
                    f"{measured.server_cpu * 1000 / max(1, measured.calls):.1f}",
                    f"{measured.server_cpu / measured.seconds * 100:.0f}%",
                    len(measured.errors),
                )
            )
        ratio = percentile(concurrent.latencies, 0.95) / percentile(single.latencies, 0.95)
        errors = len(single.errors) + len(concurrent.errors)
        verdict = "met" if ratio <= GOAL_RATIO and not errors else "NOT met"
        rows.append(
            (
                f"  goal ({connection}): p95 {CLIENTS} clients / p95 1 client = {ratio:.2f}x "
                f"(≤ {GOAL_RATIO:g}x) and {errors} errors (0): {verdict}",
            )
        )
    return rows


def test_create_latency_with_one_and_twenty_clients(tmp_path):
    load = os.getloadavg()[0]
    setups = []
    sqlite_env = server_env(tmp_path, "sqlite", f"sqlite:///{tmp_path / 'bench-api.sqlite3'}")
    setups.append(measure(sqlite_env, "SQLite + ORM broker", tmp_path))

    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    skipped = postgres_and_redis_unreachable(redis_url)
    if not skipped:
        with scratch_postgres() as database_url:
            postgres_env = server_env(tmp_path, "postgres", database_url, redis_url)
            try:
                setups.append(measure(postgres_env, "PostgreSQL + Redis", tmp_path))
            finally:
                forget_redis_keys(redis_url, postgres_env["Q_CLUSTER_NAME"])

    print_table(
        f"API create latency (POST /api/v1/requests, 2 variants, an Idempotency-Key each), "
        f"{WEB_SERVER}, production profile, {os.cpu_count()} CPUs (load {load:.1f} at the "
        f"start); 1 client × {SINGLE_CREATES} creates, then {CLIENTS} clients × "
        f"{CREATES_EACH}, back to back; "
        "CPU: the web process's CPU time per create and its share of the round",
        [row for setup in setups for row in report_rows(setup)],
        headers=("creates", "p50 ms", "p95 ms", "max ms", "creates/s", "CPU ms", "CPU", "errors"),
    )
    if skipped:
        print(f"  PostgreSQL + Redis: skipped: {skipped}")
    expected_per_round = {1: SINGLE_CREATES, CLIENTS: CLIENTS * CREATES_EACH}
    for setup in setups:
        created = []
        for measured in setup.all_rounds:
            kinds = Counter(error[:160] for error in measured.errors).most_common(3)
            assert not measured.errors, (
                f"{setup.name}, {measured.clients} clients: {kinds}; the server logged "
                f"{setup.server_errors.most_common(3)}"
            )
            assert len(measured.latencies) == expected_per_round[measured.clients]
            created += measured.created_ids
        expected = 2 * ((1 + CLIENTS) * WARMUP_CREATES + SINGLE_CREATES + CLIENTS * CREATES_EACH)
        assert len(set(created)) == len(created) == expected, setup.name
        assert setup.stored == expected, setup.name
