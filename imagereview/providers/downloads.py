"""Guarded downloads of provider result URLs.

A result URL comes from the provider, so it is fetched only from allowed hosts, never from
a private, loopback or link-local address (checked after DNS resolution and on every
redirect), with a size cap and a timeout, streamed rather than held whole.
"""

import ipaddress
import socket
from collections.abc import Iterable
from typing import IO
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 3


class UnsafeURL(Exception):
    """The URL points somewhere we refuse to fetch from."""


class DownloadFailed(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)

    @property
    def gone(self) -> bool:
        """The link is dead (expired or never there), so a fresh one may help."""
        return self.status in (403, 404, 410)


def _host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for allowed in allowed_hosts:
        allowed = allowed.lower()
        if allowed == "*" or host == allowed:
            return True
        if allowed.startswith(".") and (host.endswith(allowed) or host == allowed[1:]):
            return True
    return False


def check_url(url: str, *, allowed_hosts: Iterable[str], allow_loopback: bool) -> None:
    """Refuse a URL whose scheme, host or resolved addresses are not safe to fetch."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"not an http(s) URL: {url[:200]}")
    if not _host_allowed(parts.hostname, allowed_hosts):
        raise UnsafeURL(f"host {parts.hostname} is not in the allowed result hosts")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UnsafeURL(f"cannot resolve {parts.hostname}: {error}") from error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_loopback and allow_loopback:
            continue
        if not address.is_global:
            raise UnsafeURL(f"{parts.hostname} resolves to non-public address {address}")


def fetch_to(
    url: str,
    sink: IO[bytes],
    *,
    allowed_hosts: Iterable[str],
    allow_loopback: bool,
    max_bytes: int,
    timeout: float,
) -> str:
    """Stream `url` into `sink`, checking every hop; return the response's content type."""
    allowed_hosts = list(allowed_hosts)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allowed_hosts=allowed_hosts, allow_loopback=allow_loopback)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status_code != 200:
                        raise DownloadFailed(
                            f"result URL answered HTTP {response.status_code}",
                            status=response.status_code,
                        )
                    declared = int(response.headers.get("Content-Length") or 0)
                    if declared > max_bytes:
                        raise DownloadFailed(f"result is {declared} bytes, over {max_bytes}")
                    received = 0
                    for chunk in response.iter_bytes():
                        received += len(chunk)
                        if received > max_bytes:
                            raise DownloadFailed(f"result is over {max_bytes} bytes")
                        sink.write(chunk)
                    return response.headers.get("Content-Type", "")
            except httpx.HTTPError as error:
                raise DownloadFailed(f"download failed: {error}") from error
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects")
