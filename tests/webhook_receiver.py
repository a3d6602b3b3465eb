"""A real webhook receiver: an HTTP server on 127.0.0.1 that checks every request's Standard
Webhooks signature with the `standardwebhooks` package, keeps what it saw, and fails on
purpose when told to (the first attempts of each event, a seeded share of all requests) or
answers slowly."""

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

from imagereview.models import new_webhook_secret


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    webhook_id: str
    type: str
    verified: bool
    payload: dict | None
    status: int
    timestamp: str


@dataclass
class ReceiverConfig:
    fail_first: int = 0  # per webhook-id: its first N requests are answered `fail_status`
    fail_rate: float = 0.0  # the share of all other requests answered `fail_status`
    fail_status: int = 500
    delay: float = 0.0  # seconds before answering
    answer: bytes = b'{"ok": true}'
    seed: int = 0


@dataclass
class WebhookReceiver:
    secret: str = field(default_factory=new_webhook_secret)
    config: ReceiverConfig = field(default_factory=ReceiverConfig)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(self.config.seed)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks"

    def start(self) -> "WebhookReceiver":
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def configure(self, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.config, name, value)
            self._random = random.Random(self.config.seed)

    def seen(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.seen() if r.verified and 200 <= r.status < 300]

    def handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
        """Verify and record one request; return the status, body and delay to answer with."""
        try:
            payload = Webhook(self.secret).verify(body, headers)
            verified = True
        except (WebhookVerificationError, ValueError):
            payload, verified = None, False
        webhook_id = headers.get("webhook-id", "")
        with self._lock:
            config = self.config
            earlier = sum(1 for r in self.received if r.webhook_id == webhook_id)
            if not verified:
                status = 401
            elif earlier < config.fail_first or self._random.random() < config.fail_rate:
                status = config.fail_status
            else:
                status = 200
            self.received.append(
                Received(
                    webhook_id=webhook_id,
                    type=(payload or {}).get("type", ""),
                    verified=verified,
                    payload=payload,
                    status=status,
                    timestamp=headers.get("webhook-timestamp", ""),
                )
            )
        answer = config.answer if status == 200 else json.dumps({"status": status}).encode()
        return status, answer, config.delay


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer, delay = receiver.handle(body, headers)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting, as it should on a slow answer

    def log_message(self, format: str, *args: object) -> None:
        pass
