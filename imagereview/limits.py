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
    # How late after its reserved moment a call may still be sent. A call k that is late by
    # d stays a full provider window ahead of call k + `calls` (sent on time, a `window`
    # after k's moment) while d is within the margin; a third of it is kept for the
    # network's jitter.
    late_by: float = 0.0
    # The least time between two reserved moments. Zero lets a window's calls go together;
    # spread evenly, a burst of reserved creates cannot pile up behind the workers and
    # reach its moments late, and the sustained rate is the same.
    spacing: float = 0.0


def _limit(kind: str, calls: int, window: float, margin: float, *, spread: bool) -> Limit:
    return Limit(
        key=f"{kind}:{settings.KIE_API_BASE}",
        calls=calls,
        window=window * (1 + margin),
        late_by=window * margin * 2 / 3,
        spacing=window * (1 + margin) / calls if spread else 0.0,
    )


def submit_limit() -> Limit:
    """Creates, reserved ahead by the dispatcher: spread evenly over the window."""
    return _limit(
        "submit",
        settings.KIE_SUBMIT_LIMIT,
        settings.KIE_SUBMIT_WINDOW,
        settings.KIE_RATE_MARGIN,
        spread=True,
    )


def query_limit() -> Limit:
    """Queries, taken by each refresh as it runs: a burst of completions is asked about at
    once."""
    return _limit(
        "query",
        settings.KIE_QUERY_LIMIT,
        settings.KIE_QUERY_WINDOW,
        settings.KIE_QUERY_MARGIN,
        spread=False,
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
    granted, first_free = reserve_many(limit, count=1, max_wait=max_wait)
    return Slot(granted=True, at=granted[0]) if granted else Slot(granted=False, at=first_free)


def reserve_many(limit: Limit, *, count: int, max_wait: float) -> tuple[list[float], float]:
    """Reserve up to `count` slots, in order, none more than `max_wait` away.

    Return the moments reserved and, when fewer than `count`, the first one left free.
    One round trip, however many are asked for.
    """
    if count <= 0:
        return [], time.time()
    if settings.REDIS_URL:
        return _reserve_in_redis(limit, count=count, max_wait=max_wait)
    return _reserve_in_database(limit, count=count, max_wait=max_wait)


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
    new one only has to be a full window after the `calls`-th newest, and `spacing` after
    the newest.
    """
    # Only a spread limit looks at the newest moment: a caller's clock, read before it got
    # its turn, may be a little behind a moment another caller has just reserved.
    at = max(now, recent[0] + limit.spacing) if recent and limit.spacing else now
    if len(recent) < limit.calls:
        return at
    return max(at, recent[limit.calls - 1] + limit.window)


def _lock_window(key: str) -> bool:
    """Lock the key's window row until the transaction ends; False if it does not exist yet."""
    return bool(list(RateWindow.objects.select_for_update().filter(key=key).values_list("key")))


def _reserve_in_database(limit: Limit, *, count: int, max_wait: float) -> tuple[list[float], float]:
    with transaction.atomic():
        # The lock row serialises reservations for one key (SQLite serialises all writes).
        if not _lock_window(limit.key):
            RateWindow.objects.get_or_create(key=limit.key)
            _lock_window(limit.key)
        now = time.time()
        recent = list(
            RateSlot.objects.filter(key=limit.key)
            .order_by("-at")
            .values_list("at", flat=True)[: limit.calls]
        )
        granted: list[float] = []
        at = now
        while len(granted) < count:
            at = _slot_after(recent, limit, now)
            if at - now > max_wait:
                break
            granted.append(at)
            recent.insert(0, at)
        RateSlot.objects.bulk_create(RateSlot(key=limit.key, at=at) for at in granted)
        if granted:
            RateSlot.objects.filter(key=limit.key, at__lt=now - 2 * limit.window).delete()
    return granted, at


RESERVE_SCRIPT = """
local key, now, calls, window, max_wait, count, member, spacing =
    KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
    tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 2 * window)
local granted = {}
local at = now
for i = 1, count do
    at = now
    if spacing > 0 then
        local newest = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
        if #newest > 0 then
            at = math.max(at, tonumber(newest[2]) + spacing)
        end
    end
    local recent = redis.call('ZREVRANGE', key, calls - 1, calls - 1, 'WITHSCORES')
    if #recent > 0 then
        at = math.max(at, tonumber(recent[2]) + window)
    end
    if at - now > max_wait then
        break
    end
    redis.call('ZADD', key, at, member .. ':' .. i)
    granted[#granted + 1] = tostring(at)
end
if #granted > 0 then
    redis.call('PEXPIRE', key, math.ceil((3 * window + at - now) * 1000))
end
return {granted, tostring(at)}
"""


@cache
def _redis_script(url: str):
    import redis

    return redis.Redis.from_url(url).register_script(RESERVE_SCRIPT)


def _reserve_in_redis(limit: Limit, *, count: int, max_wait: float) -> tuple[list[float], float]:
    script = _redis_script(settings.REDIS_URL)
    key = f"{settings.Q_CLUSTER['name']}:rate:{limit.key}"
    # Redis's own clock is not used: all hosts are assumed NTP-synchronised, like the provider.
    granted, at = script(
        keys=[key],
        args=[
            repr(time.time()),
            limit.calls,
            limit.window,
            max_wait,
            count,
            uuid.uuid4().hex,
            repr(limit.spacing),
        ],
    )
    return [float(moment) for moment in granted], float(at)
