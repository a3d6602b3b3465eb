"""Storage: copy every result into our own storage, verified, hashed and checked."""

import logging
import tempfile
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from imagereview import acceptance, media
from imagereview.actions.account import halt_on
from imagereview.actions.requests import settle_request
from imagereview.limits import backoff
from imagereview.models import Asset, Generation, ImageRequest
from imagereview.providers import downloads
from imagereview.providers.errors import Action, ProviderError
from imagereview.providers.kie import KieClient
from imagereview.transitions import by_pk, lock, move

log = logging.getLogger(__name__)

G = Generation.State
MAX_STORE_ATTEMPTS = 6
# The size at which an edit's reference is compared with the output (which comes at its
# thumbnail's size): enough for the likeness checks, whatever the files' own sizes.
CHECK_SIZE = 256


@dataclass(frozen=True)
class DownloadPolicy:
    allowed_hosts: list[str]
    allow_loopback: bool
    max_bytes: int
    timeout: float

    @classmethod
    def from_settings(cls) -> "DownloadPolicy":
        return cls(
            allowed_hosts=settings.RESULT_ALLOWED_HOSTS,
            allow_loopback=settings.USE_SANDBOX,
            max_bytes=settings.RESULT_MAX_BYTES,
            timeout=settings.RESULT_TIMEOUT,
        )


def store_outputs(*, generation_id: int, client: KieClient) -> None:
    """Copy every result of a succeeded generation into our storage, then mark it stored."""
    generation = by_pk(Generation.objects.select_related("request"), generation_id)
    if generation is None or generation.state != G.SUCCEEDED:
        return
    stored = set(generation.outputs.values_list("index", flat=True))
    policy = DownloadPolicy.from_settings()
    for index, url in enumerate(generation.result_urls):
        if index in stored:
            continue
        try:
            _store_output(generation, index, url, client=client, policy=policy)
        except (media.BadImage, downloads.UnsafeURL, downloads.DownloadFailed) as error:
            _record_store_failure(generation_id, index, error)
            return
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation.state != G.SUCCEEDED:
            return
        if generation.outputs.count() < len(generation.result_urls):
            return
        move(generation, G.STORED, source="cluster", stored_at=timezone.now())
        settle_request(generation.request_id)
    log.info("generation %s stored %s outputs", generation_id, len(generation.result_urls))


def _download(url: str, sink: IO[bytes], *, client: KieClient, policy: DownloadPolicy) -> None:
    """Fetch a result, asking the provider once for a fresh link if this one is dead."""
    options = {
        "allowed_hosts": policy.allowed_hosts,
        "allow_loopback": policy.allow_loopback,
        "max_bytes": policy.max_bytes,
        "timeout": policy.timeout,
    }
    try:
        downloads.fetch_to(url, sink, **options)
    except downloads.DownloadFailed as error:
        if not error.gone:
            raise
        try:
            fresh = client.fresh_download_url(url)
        except ProviderError as provider_error:
            halt_on(provider_error)
            # Only the provider's "no" makes the link gone; a busy or halted provider is
            # asked again on the next try.
            gone = provider_error.action == Action.FAIL
            raise downloads.DownloadFailed(
                f"{error}; no fresh link: {provider_error}", status=error.status if gone else None
            ) from provider_error
        sink.seek(0)
        sink.truncate()
        downloads.fetch_to(fresh, sink, **options)


def run_checks(
    image_request: ImageRequest, facts: media.ImageFacts, output_image: Image.Image
) -> list[acceptance.Check]:
    """The acceptance checks of one output against what its request asked for.

    `output_image` is the output shrunk to thumbnail size; an edit's reference is shrunk
    alike, so that no full-size decode of either is held while they are compared.
    """
    reference = (
        image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index").first()
        if image_request.mode == ImageRequest.Mode.EDIT
        else None
    )
    reference_image = None
    if reference:
        with reference.file.open("rb") as reference_file:
            reference_image = media.reduced_image(reference_file, size=CHECK_SIZE)
    return acceptance.check_output(
        mode=image_request.mode,
        aspect_ratio=image_request.aspect_ratio,
        resolution=image_request.resolution,
        output_format=image_request.output_format,
        output=acceptance.OutputFacts(format=facts.format, width=facts.width, height=facts.height),
        output_image=output_image,
        reference_image=reference_image,
        reference_size=(reference.width, reference.height) if reference else None,
    )


def _store_output(
    generation: Generation, index: int, url: str, *, client: KieClient, policy: DownloadPolicy
) -> None:
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as sink:
        _download(url, sink, client=client, policy=policy)
        facts, reduced, preview = media.inspect_output(
            sink, size=settings.THUMBNAIL_SIZE, preview_size=media.PREVIEW_SIZE
        )
        checks = run_checks(generation.request, facts, reduced)
        thumbnail = media.jpeg_thumbnail(reduced)
        asset = Asset(
            kind=Asset.Kind.OUTPUT,
            request_id=generation.request_id,
            generation=generation,
            index=index,
            source_url=url[:2000],
            **facts.asset_fields(),
            checks=[check.as_dict() for check in checks],
            flagged=not all(check.passed for check in checks),
        )
        asset.file.save(f"output.{facts.extension}", File(sink), save=False)
    asset.thumbnail.save("thumbnail.jpg", ContentFile(thumbnail), save=False)
    if preview is not None:
        asset.preview_width, asset.preview_height = preview.size
        asset.preview.save("preview.webp", ContentFile(media.webp_preview(preview)), save=False)
    try:
        with transaction.atomic():
            asset.save()
            if asset.flagged:
                ImageRequest.objects.filter(pk=asset.request_id, flagged=False).update(flagged=True)
    except IntegrityError:
        # Another run stored this output first; drop our copy unless it is the same file.
        existing = Asset.objects.filter(generation=generation, index=index).first()
        for field in ("file", "thumbnail", "preview"):
            name = getattr(asset, field).name
            if name and (not existing or getattr(existing, field).name != name):
                getattr(asset, field).storage.delete(name)


def _record_store_failure(generation_id: int, index: int, error: Exception) -> None:
    log.warning("storing output %s of generation %s failed: %s", index, generation_id, error)
    with transaction.atomic():
        generation = lock(Generation, generation_id)
        if generation is None or generation.state != G.SUCCEEDED:
            return
        attempts = generation.store_attempts + 1
        transient = isinstance(error, downloads.DownloadFailed) and not error.gone
        if transient and attempts < MAX_STORE_ATTEMPTS:
            generation.store_attempts = attempts
            generation.next_attempt_at = timezone.now() + backoff(attempts)
            generation.failure_message = f"Storing result {index + 1} will be retried: {error}"
            generation.save(
                update_fields=["store_attempts", "next_attempt_at", "failure_message", "updated_at"]
            )
            return
        move(
            generation,
            G.FAILED,
            source="cluster",
            note=str(error),
            store_attempts=attempts,
            failure_code="store",
            failure_message=f"Result {index + 1} could not be stored: {error}"[:2000],
        )
        settle_request(generation.request_id)
