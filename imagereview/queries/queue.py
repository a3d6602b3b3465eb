"""The figures beside the review queue: how many requests stand in each status.

Counted up to a bound, as GitLab counts its issue and merge request tabs: past it the page
says "1,000+". A count to the bound reads at most that many index entries per status, so the
queue costs the same on a table of a million requests as on one of a thousand, and there is
no counter to keep in step with every write. The exact figures over time are the
dashboard's.
"""

from typing import NamedTuple

from django.db import connection

from imagereview.models import ImageRequest

COUNT_LIMIT = 1000


class StatusCount(NamedTuple):
    status: str
    label: str
    count: int
    # Whether there are more than `count`: the count stopped at the bound.
    more: bool

    @property
    def shown(self) -> str:
        return f"{self.count:,}+" if self.more else f"{self.count:,}"


def status_counts(limit: int = COUNT_LIMIT) -> list[StatusCount]:
    """Every request status with its count, bounded by `limit`, in the statuses' order.

    One query of one bounded index scan per status: each reads at most `limit` + 1 entries
    of the status index, whatever the size of the table.
    """
    table = connection.ops.quote_name(ImageRequest._meta.db_table)
    statuses = ImageRequest.Status.choices
    columns = ", ".join(
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE status = %s LIMIT %s) AS s{n})"
        for n in range(len(statuses))
    )
    params = [value for status, _ in statuses for value in (status, limit + 1)]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns}", params)
        found = cursor.fetchone()
    return [
        StatusCount(status, label, min(count, limit), count > limit)
        for (status, label), count in zip(statuses, found, strict=True)
    ]
