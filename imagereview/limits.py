"""Provider rate limits that hold across every cluster process and host.

A caller reserves the earliest moment at which its call keeps the sliding window within the
limit, then waits until that moment. Reservations live in Redis when REDIS_URL is set, else
in the database; never in process memory.
"""

import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import transaction

from imagereview.models import RateSlot, RateWindow


def backoff(attempt: int, *, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After."""
    ceiling = min(300.0, 2.0 * 2 ** max(0, attempt - 1))
    return timedelta(seconds=max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0))


@dataclass(frozen=True)
class Limit:
    key: str
    calls: int
    window: float  # seconds, including a safety margin over the provider's own window


def submit_limit() -> Limit:
    return Limit(
        key=f"submit:{settings.KIE_API_BASE}",
        calls=settings.KIE_SUBMIT_LIMIT,
        window=settings.KIE_SUBMIT_WINDOW * (1 + settings.KIE_RATE_MARGIN),
    )


def query_limit() -> Limit:
    return Limit(
        key=f"query:{settings.KIE_API_BASE}",
        calls=settings.KIE_QUERY_LIMIT,
        window=settings.KIE_QUERY_WINDOW * (1 + settings.KIE_QUERY_MARGIN),
    )


@dataclass(frozen=True)
class Slot:
    granted: bool
    at: float  # the slot's moment (Unix time): reserved if granted, else the first free one

    @property
    def wait(self) -> float:
        return max(0.0, self.at - time.time())


def reserve(limit: Limit, *, max_wait: float) -> Slot:
    """Reserve a slot for one call, unless the first free one is more than `max_wait` away."""
    if settings.REDIS_URL:
        return _reserve_in_redis(limit, max_wait=max_wait)
    return _reserve_in_database(limit, max_wait=max_wait)


# A slot this close is taken and slept for; a later one is waited for and asked again, so
# that the moment reserved stays the moment the call is sent.
SEND_NOW = 0.05


def acquire(limit: Limit, *, max_wait: float) -> Slot:
    """Wait (at most `max_wait`) for a slot and take it just before the call is made.

    When the first free slot is further away, return it ungranted, having waited nothing.
    """
    deadline = time.monotonic() + max_wait
    while True:
        slot = reserve(limit, max_wait=SEND_NOW)
        if slot.granted:
            time.sleep(slot.wait)
            return slot
        if time.monotonic() + slot.wait > deadline:
            return slot
        time.sleep(slot.wait)


def _slot_after(recent: list[float], limit: Limit, now: float) -> float:
    """The earliest moment >= now that keeps every window within the limit.

    `recent` holds the reserved moments, newest first. Slots are handed out in order, so the
    new one only has to be a full window after the `calls`-th newest.
    """
    if len(recent) < limit.calls:
        return now
    return max(now, recent[limit.calls - 1] + limit.window)


def _reserve_in_database(limit: Limit, *, max_wait: float) -> Slot:
    with transaction.atomic():
        # The lock row serialises reservations for one key (SQLite serialises all writes).
        RateWindow.objects.get_or_create(key=limit.key)
        RateWindow.objects.select_for_update().filter(key=limit.key).first()
        now = time.time()
        recent = list(
            RateSlot.objects.filter(key=limit.key)
            .order_by("-at")
            .values_list("at", flat=True)[: limit.calls]
        )
        at = _slot_after(recent, limit, now)
        if at - now > max_wait:
            return Slot(granted=False, at=at)
        RateSlot.objects.create(key=limit.key, at=at)
        RateSlot.objects.filter(key=limit.key, at__lt=now - 2 * limit.window).delete()
    return Slot(granted=True, at=at)


RESERVE_SCRIPT = """
local key, now, calls, window, max_wait, member =
    KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 2 * window)
local at = now
local recent = redis.call('ZREVRANGE', key, calls - 1, calls - 1, 'WITHSCORES')
if #recent > 0 then
    at = math.max(now, tonumber(recent[2]) + window)
end
if at - now > max_wait then
    return {0, tostring(at)}
end
redis.call('ZADD', key, at, member)
redis.call('PEXPIRE', key, math.ceil((3 * window + at - now) * 1000))
return {1, tostring(at)}
"""


@cache
def _redis_script(url: str):
    import redis

    return redis.Redis.from_url(url).register_script(RESERVE_SCRIPT)


def _reserve_in_redis(limit: Limit, *, max_wait: float) -> Slot:
    script = _redis_script(settings.REDIS_URL)
    key = f"{settings.Q_CLUSTER['name']}:rate:{limit.key}"
    # Redis's own clock is not used: all hosts are assumed NTP-synchronised, like the provider.
    reserved, at = script(
        keys=[key],
        args=[repr(time.time()), limit.calls, limit.window, max_wait, uuid.uuid4().hex],
    )
    return Slot(granted=bool(int(reserved)), at=float(at))
