"""How far a request is from its due date, in words: "due in 3 h", "overdue by 2 d 4 h"."""

from datetime import datetime, timedelta
from typing import NamedTuple

from django.utils import timezone

from imagereview.models import ImageRequest


class Due(NamedTuple):
    overdue: bool
    # "due in 3 h", "overdue by 2 d 4 h"
    words: str
    at: datetime


def _span(span: timedelta) -> str:
    """The span to the nearest unit that matters: "3 h", "2 d 4 h", "25 min"."""
    minutes = max(int(span.total_seconds() // 60), 1)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def due_state(image_request: ImageRequest, now: datetime | None = None) -> Due | None:
    if image_request.due_at is None:
        return None
    left = image_request.due_at - (now or timezone.now())
    if left <= timedelta(0):
        return Due(True, f"overdue by {_span(-left)}", image_request.due_at)
    return Due(False, f"due in {_span(left)}", image_request.due_at)
