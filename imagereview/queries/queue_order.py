"""The review queue's orders: by arrival, by due date, by priority; paged and stepped through.

Due soonest puts requests without a due date last, and priority breaks its ties by age: the
oldest first. Neither order is one index range (NULLs sort first or last as the database
pleases, and one key cannot run down priority and up age at once), so each is a list of
segments, each one an index range in its own key: requests with a due date by (due_at, id)
and then those without by (created_at, id); or one segment per priority, highest first, each
by (created_at, id). A page's cursor names its segment, so that a deep page costs what the
first does in both orders.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Model, Q, QuerySet

from imagereview.models import ImageRequest
from imagereview.queries.pages import ARRIVAL, Page, beyond, keyset_page, ordering

DUE_KEY = ("due_at", "id")
SORTS = ("oldest", "newest", "due", "priority")


@dataclass(frozen=True)
class Segment:
    """Part of an order: the rows `where` selects, in the order of `key`."""

    where: Q
    key: Sequence[str] = ARRIVAL
    ascending: bool = True

    def holds(self, row: Model) -> bool:
        """Whether `row` falls in this segment (rows are checked against the few fields
        segments filter on, with no query)."""
        return all(_matches(row, name, value) for name, value in self.where.children)


def _matches(row: Model, name: str, value: object) -> bool:
    if name.endswith("__isnull"):
        return (getattr(row, name.removesuffix("__isnull")) is None) == value
    return getattr(row, name) == value


def segments(sort: str) -> list[Segment]:
    """The segments of a queue order, in the order they are shown."""
    if sort == "due":
        return [Segment(Q(due_at__isnull=False), DUE_KEY), Segment(Q(due_at__isnull=True))]
    if sort == "priority":
        return [Segment(Q(priority=p)) for p in sorted(ImageRequest.Priority.values, reverse=True)]
    return [Segment(Q(), ascending=sort != "newest")]


def queue_page(queryset: QuerySet, *, sort: str, cursor: str, size: int) -> Page:
    """The `size` rows after `cursor` in the chosen order, and the next page's cursor.

    Arrival orders keep the plain keyset cursor; the others prefix it with the segment's
    number ("1." for the second segment). A cursor that does not decode starts afresh.
    """
    parts = segments(sort)
    if len(parts) == 1:
        return _segment_page(queryset, parts[0], cursor, size)
    index, inner = 0, ""
    start, dot, rest = cursor.partition(".")
    if dot and start.isdigit() and int(start) < len(parts):
        index, inner = int(start), rest
    rows: list = []
    for number in range(index, len(parts)):
        page = _segment_page(queryset, parts[number], inner, size - len(rows))
        rows += page.rows
        inner = ""
        if page.next_cursor:
            return Page(rows, f"{number}.{page.next_cursor}")
        if len(rows) == size:
            # Full at a segment's end: the next page starts at the next segment that has rows.
            later = range(number + 1, len(parts))
            following = next((n for n in later if queryset.filter(parts[n].where).exists()), None)
            return Page(rows, f"{following}." if following is not None else "")
    return Page(rows, "")


def _segment_page(queryset: QuerySet, segment: Segment, cursor: str, size: int) -> Page:
    return keyset_page(
        queryset.filter(segment.where),
        newest_first=not segment.ascending,
        cursor=cursor,
        size=size,
        key=segment.key,
    )


def neighbour(
    queryset: QuerySet, row: Model, *, sort: str, backwards: bool = False
) -> Model | None:
    """The row just after `row` in the chosen order (before it, `backwards`), or None.

    `row` need not be in `queryset`: its own fields place it in the order.
    """
    parts = segments(sort)
    here = next((n for n, part in enumerate(parts) if part.holds(row)), 0)
    queryset = queryset.exclude(pk=row.pk)
    segment = parts[here]
    ascending = segment.ascending != backwards
    position = tuple(getattr(row, name) for name in segment.key)
    found = (
        queryset.filter(segment.where, beyond(position, ascending=ascending, key=segment.key))
        .order_by(*ordering(ascending=ascending, key=segment.key))
        .only("pk")
        .first()
    )
    following = reversed(parts[:here]) if backwards else parts[here + 1 :]
    for part in following:
        if found is not None:
            break
        order = ordering(ascending=part.ascending != backwards, key=part.key)
        found = queryset.filter(part.where).order_by(*order).only("pk").first()
    return found


def first_in_order(queryset: QuerySet, *, sort: str) -> Model | None:
    """The first row of the chosen order."""
    for part in segments(sort):
        order = ordering(ascending=part.ascending, key=part.key)
        if found := queryset.filter(part.where).order_by(*order).only("pk").first():
            return found
    return None
