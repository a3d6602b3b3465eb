"""A local HTTP server that speaks the Kie.ai Jobs API contract, with fault knobs.

It stands in for the provider in the offline demo, in tests and in benchmarks. It does not
import Django, so tests can start it in a thread on port 0. This module holds the HTTP
server and its life cycle; the parts it serves live beside it: `routes` (the contract's
routes), `wire` (requests, replies, envelopes), `engine` (tasks, credits, completion),
`callbacks` (signing and sending them), `faults` (the dice), `files` (results, uploads,
renders), `render` (the pictures) and `config` (the knobs and presets).
"""

import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .config import SandboxConfig
from .engine import Engine
from .faults import Dice
from .files import Files
from .routes import Router
from .wire import Rejection

logger = logging.getLogger("imagereview.sandbox")


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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # _handle logs each request with its envelope code; the base class's line would be
        # formatted for nothing.
        pass

    def _handle(self) -> None:
        sandbox = self.server.sandbox
        started = time.perf_counter()
        reply = sandbox.router.handle(self.command, self.path, self.headers, self._read_body)
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
        if sandbox.config.log_requests:
            code = f" code={reply.code}" if reply.code is not None else ""
            elapsed = (time.perf_counter() - started) * 1000
            logger.info("%s %s %d%s %.0fms", self.command, self.path, reply.status, code, elapsed)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise Rejection(411, "send a Content-Length; chunked bodies are not read", status=411)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            self.close_connection = True
            raise Rejection(400, "bad Content-Length", status=400) from exc
        if length <= limit:
            return self.rfile.read(length)
        # Drain what was sent so the client reads our answer instead of a reset connection.
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
        raise Rejection(422, f"request body is larger than {limit} bytes")


class SandboxServer:
    """Serve the Kie.ai Jobs API on a local port, backed by memory."""

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or SandboxConfig()
        self._lock = threading.RLock()
        self._http_client: httpx.Client | None = None
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        self.dice = Dice(self._config.seed)
        self.engine = Engine(self)
        self._httpd = _HTTPServer((host, port), self)
        bound_port = self._httpd.server_address[1]
        public_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"http://{public_host}:{bound_port}"
        local_netlocs = {
            f"{name}:{bound_port}" for name in (public_host, host, "127.0.0.1", "localhost")
        }
        self.files = Files(self, self.url, local_netlocs)
        self.router = Router(self)

    # Life cycle

    def start(self) -> "SandboxServer":
        """Serve in a daemon thread and return self."""
        self.engine.start()
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
        self.engine.start()
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

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.server_close()
        self.engine.stop()
        with self._lock:
            if self._http_client is not None:
                self._http_client.close()

    @property
    def http(self) -> httpx.Client:
        """The client for callbacks and reference fetches."""
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
        """Change knobs at run time; raise ValueError for a bad name or value.

        `mode="unthrottled"` applies that preset (see config.MODES) before the other knobs.
        """
        with self._lock:
            self._config = self._config.with_knobs(**knobs)
            if "seed" in knobs:
                self.dice.reseed(self._config.seed)
            if "credits" in knobs:
                self.engine.reset_credits(self._config.credits)

    @property
    def balance(self) -> float:
        return self.engine.balance

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return self.engine.summaries()

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Calls answered per path, and how many of them were 429s."""
        return self.router.stats
