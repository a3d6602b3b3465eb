"""Revision chains: the line of versions a request belongs to, read by the review page and
the full-size viewer."""

from imagereview.models import ImageRequest

# The whole family of a request, in one query: up the parents to the first version, then
# down every revision from there.
FAMILY_SQL = """
WITH RECURSIVE ancestors(id, parent_id) AS (
    SELECT id, parent_id FROM {table} WHERE id = %s
    UNION ALL
    SELECT r.id, r.parent_id FROM {table} r JOIN ancestors a ON r.id = a.parent_id
), family(id) AS (
    SELECT id FROM ancestors WHERE parent_id IS NULL
    UNION ALL
    SELECT r.id FROM {table} r JOIN family f ON r.parent_id = f.id
)
SELECT * FROM {table} WHERE id IN (SELECT id FROM family)
"""


def revision_chain(image_request: ImageRequest) -> list[ImageRequest]:
    """The versions of the request's line, oldest first: its ancestors, itself, and after it
    the first revision of each version in turn."""
    sql = FAMILY_SQL.format(table=ImageRequest._meta.db_table)
    family = {version.pk: version for version in ImageRequest.objects.raw(sql, [image_request.pk])}
    family[image_request.pk] = image_request
    first_revision: dict[int, ImageRequest] = {}
    for version in sorted(family.values(), key=lambda version: (version.created_at, version.pk)):
        if version.parent_id:
            first_revision.setdefault(version.parent_id, version)
    chain = [image_request]
    while chain[0].parent_id in family:
        chain.insert(0, family[chain[0].parent_id])
    while chain[-1].pk in first_revision:
        chain.append(first_revision[chain[-1].pk])
    return chain
