"""Requests with stored outputs, made directly in the database (no provider involved)."""

import io
from functools import cache

from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from imagereview import media
from imagereview.models import Asset, Generation, ImageRequest, Publication
from imagereview.providers.sandbox import render


@cache
def picture(prompt: str, aspect_ratio: str = "1:1", variation: int = 0) -> bytes:
    return render.render(prompt, aspect_ratio=aspect_ratio, variation=variation)


def small_picture(colour: tuple[int, int, int] = (90, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return out.getvalue()


def stored_asset(image_request: ImageRequest, content: bytes, **fields) -> Asset:
    facts = media.inspect_image(io.BytesIO(content))
    asset = Asset(request=image_request, **facts.asset_fields(), **fields)
    asset.file.save(f"image.{facts.extension}", ContentFile(content), save=False)
    thumbnail = media.make_thumbnail(io.BytesIO(content), size=256)
    asset.thumbnail.save("thumbnail.jpg", ContentFile(thumbnail), save=False)
    asset.save()
    return asset


def request_in_review(
    requester,
    *,
    prompt: str = "a lighthouse at dusk",
    variants: int = 2,
    mode: str = ImageRequest.Mode.GENERATE,
    real_images: bool = True,
    **fields,
) -> ImageRequest:
    """A request whose generations are all stored and which awaits review."""
    image_request = ImageRequest.objects.create(
        requester=requester,
        prompt=prompt,
        mode=mode,
        variants=variants,
        status=ImageRequest.Status.IN_REVIEW,
        aspect_ratio="4:3" if mode == ImageRequest.Mode.EDIT else "1:1",
        **fields,
    )
    if mode == ImageRequest.Mode.EDIT:
        reference = picture(f"reference for {prompt}", "4:3") if real_images else small_picture()
        stored_asset(image_request, reference, kind=Asset.Kind.REFERENCE, index=0)
    for variant in range(1, variants + 1):
        generation = Generation.objects.create(
            request=image_request,
            variant=variant,
            state=Generation.State.STORED,
            provider_task_id=f"task_{image_request.pk}_{variant}",
            credits=18,
        )
        if real_images:
            aspect = "4:3" if mode == ImageRequest.Mode.EDIT else "1:1"
            content = picture(prompt, aspect, variant)
        else:
            content = small_picture((variant * 40 % 255, 100, 150))
        stored_asset(image_request, content, kind=Asset.Kind.OUTPUT, generation=generation)
    return image_request


def publication_of(
    output: Asset, state: str = Publication.State.PUBLISHED, **fields
) -> Publication:
    """A publication of `output` as the publishing job records it (no file is written)."""
    stem = f"{output.request_id}-v1-1-{output.sha256[:12]}"
    return Publication.objects.create(
        output=output,
        request=output.request,
        target="local",
        key=f"2025/01/{stem}.png",
        manifest_key=f"2025/01/{stem}.manifest.json",
        state=state,
        sha256=output.sha256,
        published_at=timezone.now() if state != Publication.State.PENDING else None,
        **fields,
    )
