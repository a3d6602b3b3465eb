"""Keyset pages: a page starts just past the last row of the page before, found through an
index, so that page 4 000 costs what page 1 does. No OFFSET, no COUNT.

A page is ordered by a key: field names whose values, together, are unique (the last one is
the primary key). The cursor is the key of the last row shown, opaque to the person paging.
"""

import base64
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import reduce
from typing import Any, NamedTuple, TypeVar

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import Model, Q, QuerySet

Row = TypeVar("Row", bound=Model)
# When a row arrived, its id breaking ties: the review queue's order.
ARRIVAL = ("created_at", "id")


class Page(NamedTuple):
    rows: list
    # The cursor of the next page; empty on the last one.
    next_cursor: str


def encode_cursor(row: Model, key: Sequence[str] = ARRIVAL) -> str:
    """The cursor of the page that starts just past `row`."""
    values = (getattr(row, name) for name in key)
    raw = "|".join(
        value.isoformat() if hasattr(value, "isoformat") else str(value) for value in values
    )
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(
    cursor: str, model: type[Model], key: Sequence[str] = ARRIVAL
) -> tuple[Any, ...] | None:
    """The key a cursor holds, or None for a cursor this key did not make."""
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        return None
    if len(parts) != len(key):
        return None
    try:
        values = tuple(
            model._meta.get_field(name).to_python(part)
            for name, part in zip(key, parts, strict=True)
        )
        # The database compares in UTC, which a time at the calendar's edge may not reach.
        for value in values:
            if isinstance(value, datetime) and value.tzinfo is not None:
                value.astimezone(UTC)
    except (ValidationError, FieldDoesNotExist, OverflowError):
        return None
    return None if any(value is None for value in values) else values


def beyond(position: Sequence[Any], *, ascending: bool, key: Sequence[str] = ARRIVAL) -> Q:
    """The rows after `position` in the key's order, ascending or descending.

    The disjunction alone is exact, but PostgreSQL cannot start an index scan at an OR: it
    would read the index from its first entry and filter. The leading field's bound (`>=`
    or `<=`, implied by the disjunction) is what lets both databases seek straight to the
    position, so that a deep page costs what the first page does.
    """
    lookup = "gt" if ascending else "lt"
    clauses = [
        Q(**dict(zip(key[:depth], position[:depth], strict=True)), **{f"{name}__{lookup}": value})
        for depth, (name, value) in enumerate(zip(key, position, strict=True))
    ]
    seek = Q(**{f"{key[0]}__{lookup}e": position[0]})
    return seek & reduce(operator.or_, clauses)


def ordering(*, ascending: bool, key: Sequence[str] = ARRIVAL) -> tuple[str, ...]:
    return tuple(name if ascending else f"-{name}" for name in key)


def keyset_page(
    queryset: QuerySet[Row],
    *,
    newest_first: bool,
    cursor: str,
    size: int,
    key: Sequence[str] = ARRIVAL,
) -> Page:
    """The `size` rows after `cursor` (from the start without one), and the next cursor.

    A cursor that does not decode starts from the beginning rather than failing.
    """
    position = decode_cursor(cursor, queryset.model, key) if cursor else None
    if position:
        queryset = queryset.filter(beyond(position, ascending=not newest_first, key=key))
    rows = list(queryset.order_by(*ordering(ascending=not newest_first, key=key))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, encode_cursor(rows[-1], key) if more else "")
