"""The API's request rate per token (or per signed-in user), across every web process.

The same sliding-window reservations that pace provider calls (`imagereview.limits`, in
Redis or the database) count API calls here, so that several web processes share one count.
"""

import math

from django.conf import settings

from imagereview.api.problems import Problem
from imagereview.limits import Limit, reserve

WINDOW_SECONDS = 60.0


def admit(caller: str) -> None:
    """Count one call of `caller`; raise a 429 problem when its minute is full."""
    limit = Limit(key=f"api:{caller}", calls=settings.API_RATE_LIMIT, window=WINDOW_SECONDS)
    slot = reserve(limit, max_wait=0.0)
    if not slot.granted:
        retry_after = max(1, math.ceil(slot.wait))
        raise Problem(
            429,
            "rate-limited",
            f"At most {settings.API_RATE_LIMIT} requests a minute; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
