"""Guarded downloads of provider result URLs.

A result URL comes from the provider, so it is fetched only over http(s) from allowed hosts,
never from a private, loopback, link-local or otherwise non-public address (checked after DNS
resolution and again on every redirect), with a size cap and a deadline, streamed rather
than held whole.
"""

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import IO

import httpx

MAX_REDIRECTS = 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: making one loads the CA bundle, which costs
    more than most of the calls it serves."""
    return httpx.create_ssl_context(trust_env=False)


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


def _address_allowed(address: IPAddress, *, allow_loopback: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        address = address.ipv4_mapped or address.sixtofour or address
    if address.is_loopback:
        return allow_loopback
    # In Python 3.11 is_global is still True for multicast, reserved and site-local ranges.
    if address.is_multicast or address.is_reserved or not address.is_global:
        return False
    return not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)


def check_url(url: str, *, allowed_hosts: Iterable[str], allow_loopback: bool) -> list[IPAddress]:
    """Refuse a URL whose scheme, host or resolved addresses are not safe to fetch.

    Return the addresses the host resolves to, every one of them checked.
    """
    try:
        parts = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UnsafeURL(f"not a valid URL: {url[:200]}") from error
    if parts.scheme not in ("http", "https") or not parts.host:
        raise UnsafeURL(f"not an http(s) URL: {url[:200]}")
    host = parts.raw_host.decode("ascii")
    if not _host_allowed(host, allowed_hosts):
        raise UnsafeURL(f"host {host} is not in the allowed result hosts")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeURL(f"cannot resolve {host}: {error}") from error
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if not _address_allowed(address, allow_loopback=allow_loopback):
            raise UnsafeURL(f"{host} resolves to non-public address {address}")
    return addresses


def fetch_to(
    url: str,
    sink: IO[bytes],
    *,
    allowed_hosts: Iterable[str],
    allow_loopback: bool,
    max_bytes: int,
    timeout: float,
) -> str:
    """Stream `url` into `sink`, checking every hop; return the response's content type.

    `timeout` bounds the whole download, redirects included, not just each read.
    """
    allowed_hosts = list(allowed_hosts)
    deadline = time.monotonic() + timeout
    # No keep-alive: a pooled connection, keyed by IP, could carry a later hop to another
    # host over a TLS session that was verified for the first one.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(
        follow_redirects=False, trust_env=False, limits=limits, verify=tls_context()
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            addresses = check_url(url, allowed_hosts=allowed_hosts, allow_loopback=allow_loopback)
            try:
                with stream_from(client, url, addresses[0], deadline=deadline) as response:
                    if response.is_redirect:
                        url = str(httpx.URL(url).join(response.headers["Location"]))
                        continue
                    if response.status_code != 200:
                        raise DownloadFailed(
                            f"result URL answered HTTP {response.status_code}",
                            status=response.status_code,
                        )
                    _copy_body(response, sink, max_bytes=max_bytes, deadline=deadline)
                    return response.headers.get("Content-Type", "")
            except httpx.TimeoutException as error:
                raise DownloadFailed(f"download timed out after {timeout:g}s") from error
            except (httpx.HTTPError, httpx.InvalidURL) as error:
                raise DownloadFailed(f"download failed: {error}") from error
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects")


@contextmanager
def stream_from(
    client: httpx.Client,
    url: str,
    address: IPAddress,
    *,
    deadline: float,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[httpx.Response]:
    """Open a request to `url` on a connection to `address`, the address that was checked."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpx.TimeoutException("deadline passed before the request was sent")
    target = httpx.URL(url)
    # Connecting by IP closes the DNS-rebinding gap: a second lookup by httpx could return
    # an address we never checked. Host header and SNI keep the original name, so virtual
    # hosting and certificate verification still work against that name, not the IP.
    request = client.build_request(
        method,
        target.copy_with(host=str(address)),
        content=content,
        # Raw bytes only: a compressed body could inflate past any cap in memory (a download
        # is refused later as "not an image" instead).
        headers={
            **(headers or {}),
            "Host": target.netloc.decode("ascii"),
            "Accept-Encoding": "identity",
        },
        extensions={"sni_hostname": target.raw_host.decode("ascii")},
        timeout=remaining,
    )
    response = client.send(request, stream=True)
    try:
        yield response
    finally:
        response.close()


def _copy_body(
    response: httpx.Response, sink: IO[bytes], *, max_bytes: int, deadline: float
) -> None:
    declared = int(response.headers.get("Content-Length") or 0)
    if declared > max_bytes:
        raise DownloadFailed(f"result is {declared} bytes, over {max_bytes}")
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise DownloadFailed(f"result is over {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("deadline passed while reading the body")
        sink.write(chunk)
