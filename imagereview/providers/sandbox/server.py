"""A local HTTP server that speaks the Kie.ai Jobs API contract, with fault knobs.

It stands in for the provider in the offline demo, in tests and in benchmarks. It does not
import Django, so tests can start it in a thread on port 0.
"""

import base64
import binascii
import dataclasses
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import math
import mimetypes
import posixpath
import random
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import collapse_rfc2231_value
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import httpx

from . import render

logger = logging.getLogger("imagereview.sandbox")

MODEL = "nano-banana-pro"
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
RESOLUTIONS = ("1K", "2K", "4K")
OUTPUT_FORMATS = ("png", "jpg")
MAX_PROMPT_CHARS = 10_000
MAX_REFERENCES = 8
MAX_FILE_BYTES = 30 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
# Base64 inflates by 4/3; leave room for the JSON around it.
MAX_UPLOAD_BODY_BYTES = MAX_FILE_BYTES * 4 // 3 + 64 * 1024
STATES = ("waiting", "queuing", "generating")
DOWNLOAD_URL_TTL = 20 * 60
CALLBACK_TIMEOUT = 15.0
FETCH_TIMEOUT = 30.0
REQUEST_FAULTS = ("rate_429", "rate_5xx", "rate_455")
TASK_FAULTS = (
    "rate_timeout",
    "rate_fail_501",
    "rate_drop_callback",
    "rate_duplicate_callback",
    "rate_delay_callback",
    "rate_early_callback",
    "rate_result_404_once",
    "rate_result_expired",
)


def _default_latency() -> dict[str, float]:
    return {"waiting": 0.3, "queuing": 0.3, "generating": 1.0}


@dataclass(frozen=True)
class SandboxConfig:
    api_key: str = "sandbox-key"
    webhook_hmac_key: str = ""
    latency: dict[str, float] = field(default_factory=_default_latency)
    seed: int = 0
    credits: float = 100_000.0
    submit_limit: int = 20
    submit_window: float = 10.0
    query_limit: int = 10
    query_window: float = 1.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_455: float = 0.0
    rate_timeout: float = 0.0
    rate_fail_501: float = 0.0
    rate_drop_callback: float = 0.0
    rate_duplicate_callback: float = 0.0
    rate_delay_callback: float = 0.0
    rate_early_callback: float = 0.0
    rate_result_404_once: float = 0.0
    rate_result_expired: float = 0.0
    callback_delay: float = 5.0
    timeout_sleep: float = 35.0
    result_ttl: float = 86_400.0

    def with_knobs(self, **knobs: Any) -> "SandboxConfig":
        """Return a copy with `knobs` applied; raise ValueError for a bad name or value."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in knobs.items():
            if name not in fields:
                raise ValueError(f"unknown knob {name!r}")
            if name == "latency":
                changes[name] = self._merged_latency(value)
                continue
            kind = fields[name].type
            try:
                value = kind(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be a {kind.__name__}") from exc
            if name.startswith("rate_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
            if kind in (int, float) and name != "seed" and value < 0:
                raise ValueError(f"{name} must not be negative")
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def _merged_latency(self, value: Any) -> dict[str, float]:
        if not isinstance(value, dict) or not set(value) <= set(STATES):
            raise ValueError(f"latency must be a dict with keys among {', '.join(STATES)}")
        merged = {**self.latency}
        for state, seconds in value.items():
            if not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError(f"latency[{state!r}] must be a non-negative number")
            merged[state] = float(seconds)
        return merged


class _Rejection(Exception):
    """Answer the current request with this envelope instead."""

    def __init__(
        self, code: int, msg: str, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}


class _FetchError(Exception):
    pass


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Rejection(422, f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise _Rejection(422, "body must be a JSON object")
        return payload


@dataclass
class _Reply:
    status: int = 200
    payload: Any = None
    content: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        if self.payload is None:
            return self.content
        return json.dumps(self.payload).encode()

    @property
    def code(self) -> Any:
        return self.payload.get("code") if isinstance(self.payload, dict) else None


def _envelope(code: int, msg: str, data: Any = None, *, status: int = 200) -> _Reply:
    return _Reply(status=status, payload={"code": code, "msg": msg, "data": data})


def _file_reply(status: int, msg: str) -> _Reply:
    return _Reply(status=status, content=msg.encode(), content_type="text/plain; charset=utf-8")


@dataclass
class _Route:
    handler: Callable[[_Request], _Reply]
    auth: bool = True
    body_limit: int = MAX_JSON_BYTES


@dataclass
class _Task:
    task_id: str
    body: dict[str, Any]
    created: float
    latency: tuple[float, ...]
    price: int
    faults: frozenset[str]
    variation: int = 0
    state: str = ""
    fail_code: str = ""
    fail_msg: str = ""
    completed: float | None = None
    result: bytes | None = None
    callbacks_sent: int = 0
    result_404_pending: bool = False

    @property
    def input(self) -> dict[str, Any]:
        return self.body["input"]

    @property
    def extension(self) -> str:
        return self.input.get("output_format", "png")

    @property
    def credits(self) -> int:
        return self.price if self.state == "success" else 0


@dataclass
class _Upload:
    content: bytes
    mime_type: str
    uploaded_at: str


class _Jobs:
    """Run callables after a delay on a few daemon threads."""

    def __init__(self, name: str, workers: int) -> None:
        self._name = name
        self._workers = workers
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"{self._name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def after(self, delay: float, job: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), job))
            self._wake.notify()

    def stop(self, timeout: float) -> None:
        """Drop pending jobs and give running ones up to `timeout` seconds to finish."""
        with self._wake:
            self._stopped = True
            self._heap.clear()
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped:
                        return
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        job = heapq.heappop(self._heap)[2]
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(wait)
            try:
                job()
            except Exception:
                logger.exception("sandbox job failed")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: "SandboxServer") -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client that dies mid-request (a killed worker) is routine, not a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.info("client %s went away mid-request", client_address[0])
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "KieSandbox/1.0"
    # Drop idle keep-alive connections so their threads do not linger after stop().
    timeout = 30
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients
    # would wait out the peer's delayed ACK (about 40 ms) on every request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        started = time.perf_counter()
        reply = self.server.sandbox.handle(self.command, self.path, self.headers, self._read_body)
        body = reply.body()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            logger.info("%s %s: client went away before the reply", self.command, self.path)
            return
        code = f" code={reply.code}" if reply.code is not None else ""
        elapsed = (time.perf_counter() - started) * 1000
        logger.info("%s %s %d%s %.0fms", self.command, self.path, reply.status, code, elapsed)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise _Rejection(411, "send a Content-Length; chunked bodies are not read", status=411)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise _Rejection(400, "bad Content-Length", status=400) from exc
        if length <= limit:
            return self.rfile.read(length)
        # Drain what was sent so the client reads our answer instead of a reset connection.
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
        raise _Rejection(422, f"request body is larger than {limit} bytes")


class SandboxServer:
    """Serve the Kie.ai Jobs API on a local port, backed by memory."""

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or SandboxConfig()
        self._lock = threading.RLock()
        self._rng = random.Random(self._config.seed)
        self._balance = float(self._config.credits)
        self._held = 0
        self._tasks: dict[str, _Task] = {}
        self._prompt_counts: dict[str, int] = {}
        self._calls: Counter[str] = Counter()
        self._answered_429: Counter[str] = Counter()
        self._uploads: dict[str, _Upload] = {}
        self._creates: deque[float] = deque()
        self._queries: deque[float] = deque()
        self._counter = itertools.count(1)
        self._stopping = threading.Event()
        self._completions = _Jobs("sandbox-complete", workers=4)
        self._callbacks = _Jobs("sandbox-callback", workers=16)
        self._http_client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._serving = False
        self._closed = False
        self._httpd = _HTTPServer((host, port), self)
        bound_port = self._httpd.server_address[1]
        public_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"http://{public_host}:{bound_port}"
        self._local_netlocs = {
            f"{name}:{bound_port}" for name in (public_host, host, "127.0.0.1", "localhost")
        }
        self._routes: dict[tuple[str, str], _Route] = {
            ("POST", "/api/v1/jobs/createTask"): _Route(self._create_task),
            ("GET", "/api/v1/jobs/recordInfo"): _Route(self._record_info),
            ("GET", "/api/v1/chat/credit"): _Route(self._credit),
            ("POST", "/api/v1/common/download-url"): _Route(self._download_url),
            ("POST", "/api/file-stream-upload"): _Route(
                self._stream_upload, body_limit=MAX_FILE_BYTES + 64 * 1024
            ),
            ("POST", "/api/file-base64-upload"): _Route(
                self._base64_upload, body_limit=MAX_UPLOAD_BODY_BYTES
            ),
            ("POST", "/api/file-url-upload"): _Route(self._url_upload),
            ("GET", "/sandbox/config"): _Route(self._get_config, auth=False),
            ("POST", "/sandbox/config"): _Route(self._set_config, auth=False),
            ("GET", "/sandbox/tasks"): _Route(self._list_tasks, auth=False),
            ("GET", "/sandbox/stats"): _Route(self._get_stats, auth=False),
        }

    # Life cycle

    def start(self) -> "SandboxServer":
        """Serve in a daemon thread and return self."""
        self._start_jobs()
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # Short, so stop() in a test suite's teardown returns quickly.
            kwargs={"poll_interval": 0.02},
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted or stopped from another thread."""
        self._start_jobs()
        self._serving = True
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, drop pending work and give running callbacks a moment to finish."""
        # shutdown() waits for a serve loop, so it would hang on a server never started.
        if self._serving:
            self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._close()

    def _start_jobs(self) -> None:
        if not self._started:
            self._started = True
            self._completions.start()
            self._callbacks.start()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._httpd.server_close()
        self._completions.stop(timeout=1.0)
        self._callbacks.stop(timeout=2.0)
        with self._lock:
            if self._http_client is not None:
                self._http_client.close()

    @property
    def _http(self) -> httpx.Client:
        # Built on first use: loading the CA bundle costs tens of milliseconds per server.
        with self._lock:
            if self._http_client is None:
                self._http_client = httpx.Client()
            return self._http_client

    # Knobs and inspection

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **knobs: Any) -> None:
        """Change knobs at run time; raise ValueError for a bad name or value."""
        with self._lock:
            self._config = self._config.with_knobs(**knobs)
            if "seed" in knobs:
                self._rng.seed(self._config.seed)
            if "credits" in knobs:
                self._balance = float(self._config.credits)

    @property
    def balance(self) -> float:
        return self._balance

    @property
    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            tasks = list(self._tasks.values())
        now = time.time()
        return [
            {
                "taskId": task.task_id,
                "state": self._state(task, now)[0],
                "callbacks_sent": task.callbacks_sent,
                "credits": task.credits,
                "created": _ms(task.created),
                "faults": sorted(task.faults),
            }
            for task in tasks
        ]

    # Dispatch

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Calls answered per path, and how many of them were 429s."""
        with self._lock:
            return {"calls": dict(self._calls), "answered_429": dict(self._answered_429)}

    def handle(
        self, method: str, target: str, headers: Message, read_body: Callable[[int], bytes]
    ) -> _Reply:
        """Answer one HTTP request, counting it."""
        reply = self._answer(method, target, headers, read_body)
        path = urlsplit(target).path
        if path.startswith("/api/"):
            with self._lock:
                self._calls[path] += 1
                if reply.code == 429 or reply.status == 429:
                    self._answered_429[path] += 1
        return reply

    def _answer(
        self, method: str, target: str, headers: Message, read_body: Callable[[int], bytes]
    ) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        request = _Request(method, path, dict(parse_qsl(parts.query)), headers)
        try:
            if method == "GET" and path.startswith("/files/"):
                return self._serve_file(request)
            route = self._routes.get((method, path))
            request.body = read_body(route.body_limit if route else MAX_JSON_BYTES)
            if route is None:
                if any(known == path for _, known in self._routes):
                    return _envelope(405, "method not allowed", status=405)
                return _envelope(404, "not found", status=404)
            if route.auth:
                self._check_auth(headers)
            return route.handler(request)
        except _Rejection as rejection:
            reply = _envelope(rejection.code, rejection.msg, status=rejection.status)
            reply.headers.update(rejection.headers)
            return reply
        except Exception:
            logger.exception("sandbox failed on %s %s", method, target)
            return _envelope(500, "Internal server error", status=500)

    def _check_auth(self, headers: Message) -> None:
        expected = f"Bearer {self._config.api_key}".encode()
        given = (headers.get("Authorization") or "").strip().encode()
        if not hmac.compare_digest(given, expected):
            raise _Rejection(401, "You do not have access permissions")

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def _inject_request_fault(self) -> None:
        config = self._config
        if self._chance(config.rate_429):
            raise _Rejection(429, "rate limited", status=429, headers={"Retry-After": "1"})
        if self._chance(config.rate_5xx):
            status = 500 if self._chance(0.5) else 200
            raise _Rejection(500, "Internal server error", status=status)
        if self._chance(config.rate_455):
            raise _Rejection(455, "maintenance: the service is temporarily unavailable")

    @staticmethod
    def _take_slot(window: deque[float], limit: int, seconds: float, now: float) -> None:
        """Record a call in a sliding window, or reject it when the window is full."""
        while window and window[0] <= now - seconds:
            window.popleft()
        if len(window) >= limit:
            retry_after = max(1, math.ceil(window[0] + seconds - now))
            raise _Rejection(
                429, "rate limited", status=429, headers={"Retry-After": str(retry_after)}
            )
        window.append(now)

    # Jobs API

    def _create_task(self, request: _Request) -> _Reply:
        self._inject_request_fault()
        body = request.json()
        _validate_create(body)
        config = self._config
        price = 24 if body["input"].get("resolution") == "4K" else 18
        now = time.time()
        with self._lock:
            self._take_slot(self._creates, config.submit_limit, config.submit_window, now)
            if self._balance - self._held < price:
                self._creates.pop()
                raise _Rejection(402, "insufficient credits")
            self._held += price
            faults = frozenset(
                name.removeprefix("rate_")
                for name in TASK_FAULTS
                if self._chance(getattr(config, name))
            )
            early = "early_callback" in faults
            latency = tuple(0.0 if early else config.latency.get(s, 0.0) for s in STATES)
            # Variants of one prompt differ, yet a fresh server replays the same sequence.
            prompt = body["input"]["prompt"]
            variation = self._prompt_counts.get(prompt, 0)
            self._prompt_counts[prompt] = variation + 1
            task = _Task(
                task_id=f"task_{MODEL}_{_ms(now)}_{next(self._counter)}",
                body=body,
                variation=variation,
                created=now,
                latency=latency,
                price=price,
                faults=faults,
                result_404_pending="result_404_once" in faults,
            )
            self._tasks[task.task_id] = task
        if early:
            self._complete(task, early=True)
        else:
            self._completions.after(sum(task.latency), lambda: self._complete(task))
        if "timeout" in faults:
            self._stopping.wait(config.timeout_sleep)
        return _envelope(200, "success", {"taskId": task.task_id})

    def _record_info(self, request: _Request) -> _Reply:
        self._inject_request_fault()
        config = self._config
        with self._lock:
            self._take_slot(self._queries, config.query_limit, config.query_window, time.time())
        task_id = request.query.get("taskId", "")
        if not task_id:
            raise _Rejection(400, "taskId is required")
        task = self._tasks.get(task_id)
        if task is None:
            raise _Rejection(404, f"task {task_id} not found")
        return _envelope(200, "success", self._record(task))

    def _credit(self, request: _Request) -> _Reply:
        return _envelope(200, "success", _number(self._balance))

    def _download_url(self, request: _Request) -> _Reply:
        url = request.json().get("url")
        path = self._own_path(url) if isinstance(url, str) else None
        if path is None or not path.startswith("/files/"):
            raise _Rejection(422, "url is not a file hosted by this provider")
        if self._find_file(path) is None:
            raise _Rejection(404, "file not found")
        expires = int(time.time()) + DOWNLOAD_URL_TTL
        return _envelope(200, "success", f"{self.url}{path}?t={expires}")

    # Task life cycle

    def _state(self, task: _Task, now: float) -> tuple[str, float]:
        """Return the task's state and when it was entered, following the clock."""
        if task.state:
            return task.state, task.completed or task.created
        start = task.created
        for name, seconds in zip(STATES, task.latency, strict=True):
            if now < start + seconds or name == STATES[-1]:
                return name, start
            start += seconds
        raise AssertionError("unreachable")

    def _record(self, task: _Task) -> dict[str, Any]:
        state, updated = self._state(task, time.time())
        result_json = ""
        if state == "success":
            result_json = json.dumps({"resultUrls": [self._result_url(task)]})
        completed = task.completed if task.state else None
        return {
            "taskId": task.task_id,
            "model": task.body["model"],
            "state": state,
            "param": json.dumps(task.body),
            "resultJson": result_json,
            "failCode": task.fail_code,
            "failMsg": task.fail_msg,
            "costTime": _ms(completed) - _ms(task.created) if completed else 0,
            "createTime": _ms(task.created),
            "completeTime": _ms(completed) if completed else None,
            "updateTime": _ms(updated),
            "creditsConsumed": task.credits,
        }

    def _result_url(self, task: _Task) -> str:
        return f"{self.url}/files/results/{task.task_id}/0.{task.extension}"

    def _complete(self, task: _Task, *, early: bool = False) -> None:
        """Render the result, settle the task, then send its callbacks."""
        state, result, fail_code, fail_msg = "success", None, "", ""
        prompt = task.input["prompt"]
        if "[prohibited]" in prompt:
            fail_code, fail_msg = "422", "Invalid prompt: prompt contains prohibited content"
        elif "[fail]" in prompt:
            fail_code, fail_msg = "500", "Internal server error"
        elif "fail_501" in task.faults:
            fail_code, fail_msg = "501", "Image generation failed"
        else:
            try:
                result = self._render(task)
            except (render.BadReference, _FetchError) as exc:
                fail_code, fail_msg = "422", f"Invalid image_input: {exc}"
            except Exception:
                logger.exception("rendering %s failed", task.task_id)
                fail_code, fail_msg = "500", "Internal server error"
        if fail_code:
            state = "fail"
        with self._lock:
            task.result = result
            task.fail_code, task.fail_msg = fail_code, fail_msg
            task.completed = time.time()
            task.state = state
            self._held -= task.price
            if state == "success":
                self._balance -= task.price
        self._send_callbacks(task, early=early)

    def _render(self, task: _Task) -> bytes:
        references = task.input.get("image_input") or []
        reference = self._fetch(references[0]) if references else None
        return render.render(
            task.input["prompt"],
            aspect_ratio=task.input.get("aspect_ratio", "1:1"),
            resolution=task.input.get("resolution", "1K"),
            output_format=task.extension,
            reference=reference,
            variation=task.variation,
        )

    def _send_callbacks(self, task: _Task, *, early: bool) -> None:
        url = task.body.get("callBackUrl")
        if not url:
            return
        if "drop_callback" in task.faults:
            logger.info("callback %s dropped", task.task_id)
            return
        copies = 2 if "duplicate_callback" in task.faults else 1
        if early:
            for _ in range(copies):
                self._post_callback(task, url)
            return
        delay = self._config.callback_delay if "delay_callback" in task.faults else 0.0
        for _ in range(copies):
            self._callbacks.after(delay, lambda: self._post_callback(task, url))

    def _post_callback(self, task: _Task, url: str) -> None:
        if task.state == "success":
            code, msg = 200, "Playground task completed successfully."
        else:
            code, msg = 501, "Playground task failed."
        payload = {"code": code, "msg": msg, "data": self._record(task)}
        headers = {}
        key = self._config.webhook_hmac_key
        if key:
            timestamp = str(int(time.time()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = sign_callback(key, task.task_id, timestamp)
        with self._lock:
            task.callbacks_sent += 1
        try:
            response = self._http.post(url, json=payload, headers=headers, timeout=CALLBACK_TIMEOUT)
        except httpx.HTTPError as exc:
            logger.info("callback %s -> %s failed: %r", task.task_id, url, exc)
            return
        logger.info("callback %s -> %s %d", task.task_id, url, response.status_code)

    # Files

    def _serve_file(self, request: _Request) -> _Reply:
        path = unquote(request.path)
        if path.startswith("/files/results/"):
            return self._serve_result(request, path)
        upload = self._find_upload(path)
        if upload is None:
            return _file_reply(404, "not found")
        return _Reply(content=upload.content, content_type=upload.mime_type)

    def _serve_result(self, request: _Request, path: str) -> _Reply:
        task = self._find_result(path)
        if task is None or task.result is None:
            return _file_reply(404, "not found")
        now = time.time()
        with self._lock:
            missing_once = task.result_404_pending
            task.result_404_pending = False
        if missing_once:
            return _file_reply(404, "not found")
        expires = request.query.get("t", "")
        fresh_link = expires.isdigit() and now <= int(expires)
        expired = "result_expired" in task.faults or now > (task.completed or now) + (
            self._config.result_ttl
        )
        if expired and not fresh_link:
            return _file_reply(410, "this result URL has expired; ask for a download URL")
        return _Reply(content=task.result, content_type=render.CONTENT_TYPES[task.extension])

    def _find_result(self, path: str) -> _Task | None:
        task_id, _, name = path.removeprefix("/files/results/").partition("/")
        task = self._tasks.get(task_id)
        if task is None or task.state != "success" or name != f"0.{task.extension}":
            return None
        return task

    def _find_file(self, path: str) -> bytes | None:
        if path.startswith("/files/results/"):
            task = self._find_result(path)
            return task.result if task else None
        upload = self._find_upload(path)
        return upload.content if upload else None

    def _find_upload(self, path: str) -> _Upload | None:
        if not path.startswith("/files/uploads/"):
            return None
        return self._uploads.get(path.removeprefix("/files/uploads/"))

    def _own_path(self, url: str) -> str | None:
        """Return the decoded path of `url` when this server hosts it."""
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.netloc not in self._local_netlocs:
            return None
        return unquote(parts.path)

    def _fetch(self, url: str) -> bytes:
        """Return the bytes behind a reference URL, from memory when it is one of ours."""
        path = self._own_path(url)
        if path is not None:
            content = self._find_file(path)
            if content is None:
                raise _FetchError(f"{url} was not found")
            return content
        try:
            with self._http.stream(
                "GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise _FetchError(f"{url} answered HTTP {response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_FILE_BYTES:
                        raise _FetchError(f"{url} is larger than 30 MB")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise _FetchError(f"{url} could not be fetched: {exc}") from exc
        return b"".join(chunks)

    # Uploads

    def _stream_upload(self, request: _Request) -> _Reply:
        fields = _parse_multipart(request.headers.get("Content-Type", ""), request.body)
        if "file" not in fields:
            raise _Rejection(422, "file is required")
        filename, content = fields["file"]
        name = _text(fields.get("fileName")) or filename
        return self._store_upload(_text(fields.get("uploadPath")), name, content)

    def _base64_upload(self, request: _Request) -> _Reply:
        payload = request.json()
        data = payload.get("base64Data")
        if not isinstance(data, str) or not data:
            raise _Rejection(422, "base64Data is required")
        hint = ""
        if data.startswith("data:"):
            header, _, data = data.partition(",")
            hint = header.removeprefix("data:").split(";")[0]
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Rejection(422, "base64Data is not valid base64") from exc
        return self._store_upload(
            payload.get("uploadPath"), payload.get("fileName"), content, mime_hint=hint
        )

    def _url_upload(self, request: _Request) -> _Reply:
        payload = request.json()
        url = payload.get("fileUrl")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise _Rejection(422, "fileUrl must be an http(s) URL")
        try:
            content = self._fetch(url)
        except _FetchError as exc:
            raise _Rejection(422, f"fileUrl: {exc}") from exc
        name = payload.get("fileName") or posixpath.basename(urlsplit(url).path)
        return self._store_upload(payload.get("uploadPath"), name, content)

    def _store_upload(
        self, upload_path: Any, file_name: Any, content: bytes, *, mime_hint: str = ""
    ) -> _Reply:
        if not isinstance(upload_path, str) or not upload_path.strip("/"):
            raise _Rejection(422, "uploadPath is required")
        upload_path = upload_path.strip("/")
        if any(part in ("", ".", "..") for part in upload_path.split("/")):
            raise _Rejection(422, "uploadPath must not contain empty, '.' or '..' segments")
        if file_name is not None and not isinstance(file_name, str):
            raise _Rejection(422, "fileName must be a string")
        if file_name and ("/" in file_name or file_name in (".", "..")):
            raise _Rejection(422, "fileName must be a plain file name")
        if len(content) > MAX_FILE_BYTES:
            raise _Rejection(422, "file is larger than 30 MB")
        mime_type = _sniff(content) or mime_hint
        if not file_name:
            extension = mimetypes.guess_extension(mime_type or "") or ""
            file_name = f"{uuid.uuid4().hex}{extension}"
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        file_path = f"{upload_path}/{file_name}"
        uploaded_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self._uploads[file_path] = _Upload(content, mime_type, uploaded_at)
        data = {
            "fileName": file_name,
            "filePath": file_path,
            "downloadUrl": f"{self.url}/files/uploads/{quote(file_path)}",
            "fileSize": len(content),
            "mimeType": mime_type,
            "uploadedAt": uploaded_at,
        }
        reply = _envelope(200, "File uploaded successfully", data)
        reply.payload["success"] = True
        return reply

    # Admin

    def _get_config(self, request: _Request) -> _Reply:
        return _envelope(200, "success", dataclasses.asdict(self._config))

    def _set_config(self, request: _Request) -> _Reply:
        try:
            self.configure(**request.json())
        except ValueError as exc:
            raise _Rejection(422, str(exc)) from exc
        return self._get_config(request)

    def _get_stats(self, request: _Request) -> _Reply:
        return _envelope(200, "success", self.stats)

    def _list_tasks(self, request: _Request) -> _Reply:
        return _envelope(200, "success", self.tasks)


def sign_callback(key: str, task_id: str, timestamp: str) -> str:
    """Return the X-Webhook-Signature value for a callback."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _validate_create(body: dict[str, Any]) -> None:
    if body.get("model") != MODEL:
        raise _Rejection(422, f"model must be {MODEL!r}")
    callback = body.get("callBackUrl")
    if callback is not None and not _is_http_url(callback):
        raise _Rejection(422, "callBackUrl must be an http(s) URL")
    params = body.get("input")
    if not isinstance(params, dict):
        raise _Rejection(422, "input is required and must be an object")
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Rejection(422, "input.prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _Rejection(422, f"input.prompt must be at most {MAX_PROMPT_CHARS} characters")
    for name, allowed in (
        ("aspect_ratio", ASPECT_RATIOS),
        ("resolution", RESOLUTIONS),
        ("output_format", OUTPUT_FORMATS),
    ):
        if name in params and params[name] not in allowed:
            raise _Rejection(422, f"input.{name} must be one of {', '.join(allowed)}")
    references = params.get("image_input")
    if references is None:
        references = []
    if (
        not isinstance(references, list)
        or len(references) > MAX_REFERENCES
        or not all(_is_http_url(url) for url in references)
    ):
        raise _Rejection(
            422, f"input.image_input must be a list of at most {MAX_REFERENCES} http(s) URLs"
        )


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https")


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """Return {field name: (file name, content)} for a multipart/form-data body."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _Rejection(422, "body must be multipart/form-data")
    fields: dict[str, tuple[str, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "content-disposition":
                disposition["Content-Disposition"] = value.strip()
        field_name = disposition.get_param("name", header="Content-Disposition")
        filename = disposition.get_param("filename", "", header="Content-Disposition")
        if field_name:
            fields[collapse_rfc2231_value(field_name)] = (
                collapse_rfc2231_value(filename),
                content.removesuffix(b"\r\n"),
            )
    return fields


def _text(field: tuple[str, bytes] | None) -> str:
    return field[1].decode("utf-8", "replace").strip() if field else ""


def _sniff(content: bytes) -> str:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return ""


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value
