"""Previews: the rendition of a large image that pages show, for assets stored without one."""

import logging

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q, QuerySet

from imagereview import media
from imagereview.models import Asset

log = logging.getLogger(__name__)


def lacking_preview() -> QuerySet[Asset]:
    """Assets larger than the preview size that have no preview yet."""
    larger = Q(width__gt=media.PREVIEW_SIZE) | Q(height__gt=media.PREVIEW_SIZE)
    return Asset.objects.filter(larger, preview="")


def make_preview(*, asset_id: int) -> bool:
    """Store a preview of one asset that lacks it, and say whether this call stored one.

    An asset that shares its file with another (a reference made from an output) shares
    that one's preview. Safe to run twice or at once: the row takes the first preview, and
    a later copy is deleted. Raise media.BadImage or OSError if the file cannot be read.
    """
    asset = lacking_preview().filter(pk=asset_id).first()
    if asset is None:
        return False
    twin = Asset.objects.filter(file=asset.file.name).exclude(preview="").first()
    if twin:
        name, width, height = twin.preview.name, twin.preview_width, twin.preview_height
    else:
        with asset.file.open("rb") as stored:
            preview = media.reduced_image(stored, size=media.PREVIEW_SIZE)
        width, height = preview.size
        asset.preview.save("preview.webp", ContentFile(media.webp_preview(preview)), save=False)
        name = asset.preview.name
    with transaction.atomic():
        stored = Asset.objects.filter(pk=asset.pk, preview="").update(
            preview=name, preview_width=width, preview_height=height
        )
    if not stored and not twin:
        asset.preview.storage.delete(name)
    return bool(stored)


def make_previews(*, batch_size: int = 100) -> tuple[int, dict[int, str]]:
    """Store the missing previews, a batch of rows at a time and one image in memory at a
    time; answer how many were stored and why each failed one failed."""
    made, failures, after = 0, {}, 0
    while True:
        batch = list(
            lacking_preview()
            .filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return made, failures
        for asset_id in batch:
            try:
                made += make_preview(asset_id=asset_id)
            except (media.BadImage, OSError) as error:
                log.warning("no preview for asset %s: %s", asset_id, error)
                failures[asset_id] = str(error)
        after = batch[-1]
