"""Requests whose outputs are larger than the preview size, with previews made the way the
backfill makes them, for the viewer's and the previews' tests."""

import io

from PIL import Image

from imagereview.actions.previews import make_preview
from imagereview.models import Asset, Generation, ImageRequest
from tests.factories import stored_asset

GREY = (128, 128, 128)
RED = (255, 0, 0)


def marked_picture(
    size: tuple[int, int] = (3000, 2000),
    *,
    background: tuple[int, int, int] = GREY,
    marks: dict[tuple[int, int], tuple[int, int, int]] | None = None,
) -> bytes:
    """A flat PNG with single pixels of other colours at known places."""
    image = Image.new("RGB", size, background)
    for place, colour in (marks or {}).items():
        image.putpixel(place, colour)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def large_request(
    requester,
    *,
    variants: int = 2,
    pictures: list[bytes] | None = None,
    reference: bytes | None = None,
    parent: ImageRequest | None = None,
    prompt: str = "a grey wall",
) -> ImageRequest:
    """A request in review whose outputs (and reference, for an edit) have previews."""
    image_request = ImageRequest.objects.create(
        requester=requester,
        prompt=prompt,
        mode=ImageRequest.Mode.EDIT if reference else ImageRequest.Mode.GENERATE,
        variants=variants,
        status=ImageRequest.Status.IN_REVIEW,
        aspect_ratio="3:2",
        resolution="4K",
        parent=parent,
        revision=parent.revision + 1 if parent else 1,
    )
    assets = []
    if reference:
        assets.append(stored_asset(image_request, reference, kind=Asset.Kind.REFERENCE, index=0))
    for variant in range(1, variants + 1):
        generation = Generation.objects.create(
            request=image_request,
            variant=variant,
            state=Generation.State.STORED,
            provider_task_id=f"task_{image_request.pk}_{variant}",
            credits=18,
        )
        content = (
            pictures[variant - 1]
            if pictures
            else marked_picture(background=(40 * variant % 256, 120, 160))
        )
        assets.append(
            stored_asset(image_request, content, kind=Asset.Kind.OUTPUT, generation=generation)
        )
    for asset in assets:
        make_preview(asset_id=asset.pk)
    return image_request


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("generation__variant"))
