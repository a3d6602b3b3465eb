"""The one outbound call to a webhook subscriber: a POST, guarded like a result download.

An endpoint URL is checked as a result URL is (public addresses only, resolved once and
connected to at the checked address), with loopback allowed only by WEBHOOK_ALLOW_LOOPBACK
and plain http refused under WEBHOOK_REQUIRE_HTTPS. Redirects are not followed: a
subscriber answers at the URL it registered, not wherever a 3xx points.
"""

import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from imagereview.providers.downloads import (
    IPAddress,
    UnsafeURL,
    check_url,
    stream_from,
    tls_context,
)

EXCERPT_BYTES = 2048
USER_AGENT = "imagereview-webhooks/1"


@dataclass(frozen=True)
class PostResult:
    """What one POST came to: the status when the subscriber answered, else an error."""

    status: int | None
    duration_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and not self.error


def check_endpoint_url(url: str) -> None:
    """Refuse a URL that webhooks may not be sent to, with a message that says why."""
    _checked_addresses(url)


def _checked_addresses(url: str) -> list[IPAddress]:
    if settings.WEBHOOK_REQUIRE_HTTPS and not url.lower().startswith("https://"):
        raise UnsafeURL("it must start with https://")
    loopback = settings.WEBHOOK_ALLOW_LOOPBACK
    try:
        return check_url(url, allowed_hosts=["*"], allow_loopback=loopback)
    except UnsafeURL as error:
        allowed = "public addresses and this machine" if loopback else "public addresses"
        raise UnsafeURL(f"{error}; webhooks go only to {allowed}") from error


def post_webhook(url: str, body: bytes, headers: dict[str, str]) -> PostResult:
    """POST `body` to `url` and report what came back, within WEBHOOK_TIMEOUT.

    Never raises for what the subscriber or the network does: every outcome is a result.
    """
    timeout = settings.WEBHOOK_TIMEOUT
    started = time.monotonic()
    try:
        addresses = _checked_addresses(url)
    except UnsafeURL as error:
        return PostResult(status=None, duration_ms=_ms_since(started), error=f"refused: {error}")
    # No keep-alive: each attempt opens its own connection to the address just checked.
    limits = httpx.Limits(max_keepalive_connections=0)
    try:
        with (
            httpx.Client(
                follow_redirects=False, trust_env=False, limits=limits, verify=tls_context()
            ) as client,
            stream_from(
                client,
                url,
                addresses[0],
                deadline=started + timeout,
                method="POST",
                content=body,
                headers={"User-Agent": USER_AGENT, **headers},
            ) as response,
        ):
            excerpt = _read_excerpt(response, deadline=started + timeout)
    except httpx.TimeoutException:
        return PostResult(None, _ms_since(started), error=f"no answer within {timeout:g} s")
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return PostResult(None, _ms_since(started), error=f"{type(error).__name__}: {error}")
    error = ""
    if response.is_redirect:
        error = "redirect not followed: webhooks go only to the URL as registered"
    return PostResult(response.status_code, _ms_since(started), excerpt, error)


def _read_excerpt(response: httpx.Response, *, deadline: float) -> str:
    """The first couple of kilobytes of the answer, for the attempt log; the rest is unread."""
    received = b""
    try:
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= EXCERPT_BYTES or time.monotonic() > deadline:
                break
    except httpx.TimeoutException:
        # The status is what counts; a body that stalls after it only shortens the excerpt.
        pass
    # PostgreSQL text cannot hold NUL characters.
    return received[:EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
