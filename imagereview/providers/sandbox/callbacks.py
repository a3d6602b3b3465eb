"""Callbacks out: their signature, and a cheap way to POST them."""

import base64
import hashlib
import hmac
import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from .config import CALLBACK_TIMEOUT


class CallbackPoster:
    """POST JSON over connections kept alive per thread and per host.

    http.client costs a quarter of httpx's CPU per call, and the sandbox shares the machine
    with the app it serves.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pools: list[dict[tuple[str, str], http.client.HTTPConnection]] = []

    def post(self, url: str, payload: dict[str, Any], headers: dict[str, str]) -> int:
        """Send the payload; return the HTTP status. Raise OSError or HTTPException."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise http.client.InvalidURL(f"not an http(s) URL: {url}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "Accept": "*/*", **headers}
        connections = self._connections()
        key = (parts.scheme, parts.netloc)
        connection = connections.pop(key, None)
        reused = connection is not None
        while True:
            if connection is None:
                connection = self._connect(parts.scheme, parts.netloc)
            try:
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                connection.close()
                connection = None
                if not reused:
                    raise
                # The server closed a kept-alive connection while it sat idle: reconnect.
                reused = False
                continue
            except BaseException:
                connection.close()
                raise
            if response.will_close:
                connection.close()
            else:
                connections[key] = connection
            return response.status

    def close(self) -> None:
        """Close the idle connections of every thread."""
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            for connection in list(pool.values()):
                connection.close()

    def _connections(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        """This thread's idle connections by (scheme, host and port)."""
        if not hasattr(self._local, "connections"):
            self._local.connections = {}
            with self._lock:
                self._pools.append(self._local.connections)
        return self._local.connections

    @staticmethod
    def _connect(scheme: str, netloc: str) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return kind(netloc, timeout=CALLBACK_TIMEOUT)


def sign_callback(key: str, task_id: str, timestamp: str) -> str:
    """Return the X-Webhook-Signature value for a callback."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
