"""Intake: a request and its generations, and the request's status as its generations end."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from imagereview import media
from imagereview.actions import webhooks
from imagereview.actions.review import apply_acceptance_rules
from imagereview.jobs import enqueue_after_commit
from imagereview.models import Asset, Generation, ImageRequest, Workflow
from imagereview.transitions import lock, move, record_creation
from imagereview.workflows import default_workflow, entry_stage

log = logging.getLogger(__name__)

G = Generation.State
R = ImageRequest.Status


@dataclass(frozen=True)
class ReferenceUpload:
    """A reference image given with an edit request, validated by the caller."""

    name: str
    stream: IO[bytes]


def create_request(
    *,
    requester: AbstractBaseUser,
    prompt: str,
    aspect_ratio: str,
    resolution: str,
    output_format: str,
    variants: int,
    mode: str = ImageRequest.Mode.GENERATE,
    parent: ImageRequest | None = None,
    references: Sequence[ReferenceUpload | Asset] = (),
    acceptance_rules: dict | None = None,
    required_approvals: int = 1,
    approval_quota: int = 1,
    auto_publish: bool | None = None,
    due_at: datetime | None = None,
    priority: int = ImageRequest.Priority.NORMAL,
    workflow: Workflow | None = None,
) -> ImageRequest:
    """Record a request with one generation per variant and queue their submission.

    References are uploads (stored here) or earlier assets (reused without a copy). Either
    everything is stored and committed, or nothing is left behind. A new request without a
    workflow gets the default one, if any; a revision keeps its parent's and starts at the
    stage the workflow names for revisions.
    """
    if (mode == ImageRequest.Mode.EDIT) != bool(references):
        raise ValueError("an edit needs references and a generation takes none")
    now = timezone.now()
    stored_files: list[str] = []
    if workflow is None and parent is None:
        workflow = default_workflow()
    try:
        with transaction.atomic():
            image_request = ImageRequest.objects.create(
                workflow=workflow,
                stage=entry_stage(workflow, revision=parent is not None),
                mode=mode,
                prompt=prompt,
                aspect_ratio=aspect_ratio,
                resolution=resolution,
                output_format=output_format,
                variants=variants,
                requester=requester,
                parent=parent,
                revision=parent.revision + 1 if parent else 1,
                acceptance_rules=acceptance_rules or {},
                required_approvals=required_approvals,
                approval_quota=min(approval_quota, variants),
                auto_publish=auto_publish,
                due_at=due_at,
                priority=priority,
            )
            record_creation(image_request, source="intake", actor=requester)
            for index, reference in enumerate(references):
                asset = _reference_asset(image_request, index, reference)
                if isinstance(reference, ReferenceUpload):
                    stored_files += [asset.file.name, asset.thumbnail.name]
                    stored_files += [asset.preview.name] if asset.preview else []
            for variant in range(1, variants + 1):
                # Due at once: the dispatcher hands it a create slot and sends its job.
                generation = Generation.objects.create(
                    request=image_request, variant=variant, next_attempt_at=now
                )
                record_creation(generation, source="intake", actor=requester)
    except BaseException:
        for name in stored_files:
            Asset.file.field.storage.delete(name)
        raise
    log.info("request %s (%s) by %s, %s variants", image_request.pk, mode, requester, variants)
    return image_request


def _reference_asset(
    image_request: ImageRequest, index: int, reference: ReferenceUpload | Asset
) -> Asset:
    if isinstance(reference, Asset):
        return Asset.objects.create(
            kind=Asset.Kind.REFERENCE,
            request=image_request,
            index=index,
            file=reference.file.name,
            thumbnail=reference.thumbnail.name,
            preview=reference.preview.name,
            preview_width=reference.preview_width,
            preview_height=reference.preview_height,
            sha256=reference.sha256,
            bytes=reference.bytes,
            width=reference.width,
            height=reference.height,
            content_type=reference.content_type,
            source_url=reference.source_url,
        )
    facts = media.inspect_image(reference.stream, max_pixels=media.MAX_REFERENCE_PIXELS)
    asset = Asset(
        kind=Asset.Kind.REFERENCE, request=image_request, index=index, **facts.asset_fields()
    )
    # References are shown in A/B beside 4K outputs: they get a preview as outputs do.
    reduced, preview = media.renditions(
        reference.stream, size=settings.THUMBNAIL_SIZE, preview_size=media.PREVIEW_SIZE
    )
    asset.file.save(f"reference.{facts.extension}", File(reference.stream), save=False)
    asset.thumbnail.save("thumbnail.jpg", ContentFile(media.jpeg_thumbnail(reduced)), save=False)
    if preview is not None:
        asset.preview_width, asset.preview_height = preview.size
        asset.preview.save("preview.webp", ContentFile(media.webp_preview(preview)), save=False)
    asset.save()
    return asset


def settle_request(request_id: int) -> None:
    """Send a request to review (or fail it) once every generation is final.

    Call inside the transaction that made a generation final. A late result on a request
    that had failed brings it to review after all.
    """
    image_request = lock(ImageRequest, request_id)
    if image_request.status not in (R.GENERATING, R.FAILED):
        if image_request.status == R.IN_REVIEW:
            apply_acceptance_rules(image_request)
        return
    states = list(image_request.generations.values_list("state", flat=True))
    if any(state not in Generation.FINAL_STATES for state in states):
        return
    if G.STORED in states:
        move(image_request, R.IN_REVIEW, source="cluster")
        apply_acceptance_rules(image_request)
    elif image_request.status == R.GENERATING:
        move(image_request, R.FAILED, source="cluster", note="no generation succeeded")
        enqueue_after_commit("notify_request_failed", image_request.pk)
        failures = image_request.generations.values("variant", "failure_code", "failure_message")
        webhooks.emit(
            "request.failed",
            {
                "request_id": image_request.pk,
                "request_url": settings.PUBLIC_BASE_URL + image_request.get_absolute_url(),
                "prompt": image_request.prompt,
                "failures": [
                    {
                        "variant": f["variant"],
                        "code": f["failure_code"],
                        "message": f["failure_message"],
                    }
                    for f in failures
                ],
            },
            request_id=image_request.pk,
        )
