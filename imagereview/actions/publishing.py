"""Publishing: approved outputs copied to a publish target with their manifest, and retracted.

`publish` records the wish and returns at once; the cluster's `run_publication` does the
copy. That job may run twice, at once or after dying mid-copy: it lands the file while
holding the publication's row, always at the same key, and reads back what landed to check
its sha256 before the publication counts.
"""

import json
import logging
import tempfile
from contextlib import ExitStack
from datetime import datetime
from typing import IO

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from imagereview import media
from imagereview.actions import webhooks
from imagereview.jobs import dispatch_lease, enqueue, enqueue_after_commit
from imagereview.limits import backoff
from imagereview.models import Asset, ImageRequest, Publication, WebhookEvent
from imagereview.publishing import credentials, manifest, targets
from imagereview.publishing.signer import SigningConfigurationError
from imagereview.transitions import lock, move, record_creation
from imagereview.verdicts import counting_rows, standings
from imagereview.workflows import following_stage

log = logging.getLogger(__name__)

P = Publication.State
BATCH = 200


class PublishRefused(Exception):
    """A publication the rules do not allow; the message is for the person who asked."""


def publish(
    *,
    output: Asset,
    actor: AbstractBaseUser | None,
    target: str | None = None,
    source: str = "review",
    check_file: bool = True,
) -> Publication:
    """Ask for an approved output to be published to `target`; the cluster copies it.

    Publishing again to the same target returns the publication there is. With
    `check_file`, the stored file is hashed first, so a damaged one is refused at once.
    """
    target = target or settings.PUBLISH_DEFAULT_TARGET
    try:
        targets.storage_for(target)
    except targets.UnknownTarget as error:
        raise PublishRefused(str(error)) from error
    if check_file:
        _check_stored_file(output)
    with transaction.atomic():
        # The request's lock orders this after any decision being recorded on it.
        image_request = lock(ImageRequest, output.request_id)
        existing = Publication.objects.filter(output=output, target=target).first()
        if existing and existing.state == P.RETRACTED:
            raise PublishRefused(
                f"Output {output.pk} was published and then retracted "
                f"({existing.retract_reason}); it is not published again."
            )
        if existing:
            return existing
        problem = approval_problem(output, image_request)
        if problem:
            raise PublishRefused(problem)
        key = targets.publish_key(output)
        publication = Publication.objects.create(
            output=output,
            request=image_request,
            target=target,
            key=key,
            manifest_key=targets.manifest_key(key),
            requested_by=actor,
            next_attempt_at=timezone.now() + dispatch_lease(),
        )
        record_creation(publication, source=source, actor=actor, note=f"to {target}: {key}")
        enqueue_after_commit("publish_output", publication.pk)
    log.info("output %s: publishing to %s as %s", output.pk, target, key)
    return publication


def approval_problem(output: Asset, image_request: ImageRequest) -> str | None:
    """Why the output may not be published yet, or None when it is approved."""
    if output.kind != Asset.Kind.OUTPUT:
        return "Only outputs can be published."
    # With review stages, approved means approved in the last one.
    stage = image_request.stage
    if following_stage(stage) is not None:
        return (
            f"Output {output.pk} has not passed every review stage yet (the request is in "
            f"{stage.name}); only approved outputs can be published."
        )
    rows = counting_rows(output=output, stage_id=image_request.stage_id)
    standing = standings(rows).get(output.pk)
    needed = stage.required_approvals if stage else image_request.required_approvals
    if standing and standing.approved(needed):
        return None
    if standing and standing.rejected:
        return f"Output {output.pk} was rejected; only approved outputs can be published."
    approvals = len(standing.approvals) if standing else 0
    return (
        f"Output {output.pk} is not approved ({approvals} of {needed} "
        f"approval{'s' if needed > 1 else ''}); only approved outputs can be published."
    )


def _check_stored_file(output: Asset) -> None:
    try:
        with output.file.open("rb") as stored:
            sha256, _ = media.digest(stored)
    except OSError as error:
        raise PublishRefused(f"The stored file of output {output.pk} cannot be read.") from error
    if sha256 != output.sha256:
        raise PublishRefused(
            f"The stored file of output {output.pk} no longer matches its sha256 "
            f"(recorded {output.sha256[:12]}…, found {sha256[:12]}…); it is not published."
        )


def run_publication(*, publication_id: int) -> None:
    """Copy the file (with Content Credentials) and its manifest to the target, verified."""
    publication = (
        Publication.objects.select_related("output__request", "output__generation")
        .filter(pk=publication_id)
        .first()
    )
    if publication is None or publication.state != P.PENDING:
        return
    output = publication.output
    try:
        _check_stored_file(output)
    except PublishRefused as refused:
        _fail(publication_id, str(refused), final=True)
        return
    try:
        event = _publish(publication)
    except (OSError, PublishRefused, targets.UnknownTarget) as error:
        _fail(publication_id, str(error))
        return
    except SigningConfigurationError as error:
        _fail(publication_id, f"Content Credentials cannot be signed: {error}")
        return
    except Exception as error:  # the storage backend's own errors (botocore's, say)
        log.exception("publishing %s failed", publication_id)
        _fail(publication_id, f"{type(error).__name__}: {error}")
        return
    if event is None:
        return
    log.info("publication %s landed at %s:%s", publication_id, publication.target, publication.key)
    # Already on the cluster: make the first attempts here rather than queue them behind
    # other publications.
    for delivery_id in event.deliveries.values_list("pk", flat=True):
        webhooks.deliver(delivery_id=delivery_id)


def _publish(publication: Publication) -> WebhookEvent | None:
    """Sign a copy, then land it and its manifest while holding the publication's row.

    Signing is not repeatable (the credentials carry the moment), so two runs of one job
    write different bytes: the row lock lets one land and record its file, and the other
    find the work done. A run killed while landing leaves a file the next run replaces.
    """
    output = publication.output
    published_at = timezone.now()
    document = manifest.manifest_for(output)
    document["publication"] = manifest.publication_block(publication, published_at=published_at)
    document["timestamps"]["published_at"] = document["publication"]["published_at"]
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as signed:
        outcome = _sign(output, signed, document)
        document["publication"]["credentials"] = outcome.status
        document["publication"]["credentials_note"] = outcome.note
        signed.seek(0)
        sha256, size = media.digest(signed)
        with transaction.atomic():
            publication = lock(Publication, publication.pk)
            if publication.state != P.PENDING:
                return None
            storage = targets.storage_for(publication.target)
            _land(storage, publication.key, signed, sha256=sha256, size=size)
            _write_manifest(storage, publication.manifest_key, document)
            move(
                publication,
                P.PUBLISHED,
                source="cluster",
                sha256=sha256,
                bytes=size,
                credentials=outcome.status,
                credentials_note=outcome.note,
                manifest=document,
                published_at=published_at,
                failure_message="",
                next_attempt_at=None,
            )
            return webhooks.emit(
                "output.published",
                publication_data(publication),
                request_id=publication.request_id,
                queue=False,
            )


def _sign(output: Asset, signed: IO[bytes], document: dict) -> credentials.CredentialsOutcome:
    """Write the output with its Content Credentials (or, if it cannot carry them, as it is)."""
    with ExitStack() as files:
        source = files.enter_context(output.file.open("rb"))
        references = [
            credentials.Reference(
                stream=files.enter_context(reference.file.open("rb")),
                content_type=reference.content_type,
                title=f"Reference {reference.index + 1} of request #{output.request_id}",
            )
            for reference in _references(output.request)
        ]
        return credentials.embed_credentials(
            source,
            signed,
            content_type=output.content_type,
            manifest=document,
            references=references,
        )


def _land(storage: Storage, key: str, signed: IO[bytes], *, sha256: str, size: int) -> None:
    """Write the file at `key` (the target overwrites) and check what landed there."""
    signed.seek(0)
    saved = storage.save(key, File(signed, name=key))
    if saved != key:
        storage.delete(saved)
        raise PublishRefused(f"the target stored the file as {saved}, not {key}")
    with storage.open(key, "rb") as landed:
        landed_sha256, landed_size = media.digest(landed)
    if (landed_sha256, landed_size) != (sha256, size):
        raise PublishRefused(
            f"what landed at {key} is not what was sent "
            f"(sha256 {landed_sha256[:12]}… of {landed_size} bytes, sent {sha256[:12]}…)"
        )


def _references(image_request: ImageRequest) -> list[Asset]:
    if image_request.mode != ImageRequest.Mode.EDIT:
        return []
    return list(image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"))


def _write_manifest(storage: Storage, key: str, document: dict) -> None:
    body = json.dumps(document, indent=2, ensure_ascii=False).encode()
    storage.save(key, ContentFile(body, name=key))


def _fail(publication_id: int, message: str, *, final: bool = False) -> None:
    log.warning("publication %s: %s", publication_id, message)
    with transaction.atomic():
        publication = lock(Publication, publication_id)
        if publication is None or publication.state != P.PENDING:
            return
        attempts = publication.attempts + 1
        if final or attempts >= settings.PUBLISH_MAX_ATTEMPTS:
            move(
                publication,
                P.FAILED,
                source="cluster",
                note=message,
                attempts=attempts,
                failure_message=message[:2000],
                next_attempt_at=None,
            )
            return
        publication.attempts = attempts
        publication.failure_message = f"Will be tried again: {message}"[:2000]
        publication.next_attempt_at = timezone.now() + backoff(attempts)
        publication.save(
            update_fields=["attempts", "failure_message", "next_attempt_at", "updated_at"]
        )


def retry_publication(*, publication_id: int, actor: AbstractBaseUser | None) -> Publication:
    """Try a failed publication again."""
    with transaction.atomic():
        publication = lock(Publication, publication_id)
        if publication is None or publication.state != P.FAILED:
            raise PublishRefused("Only a failed publication can be tried again.")
        move(
            publication,
            P.PENDING,
            source="admin",
            actor=actor,
            attempts=0,
            next_attempt_at=timezone.now() + dispatch_lease(),
        )
        enqueue_after_commit("publish_output", publication.pk)
    return publication


def retract(*, publication_id: int, actor: AbstractBaseUser, reason: str) -> Publication:
    """Withdraw a published output: the file leaves the target, its manifest says why."""
    reason = reason.strip()
    if not reason:
        raise PublishRefused("Say why the publication is retracted.")
    with transaction.atomic():
        publication = lock(Publication, publication_id)
        if publication is None:
            raise PublishRefused("There is no such publication.")
        if publication.state != P.PUBLISHED:
            raise PublishRefused(
                f"Only a published output can be retracted; this one is "
                f"{publication.get_state_display().lower()}."
            )
        now = timezone.now()
        move(
            publication,
            P.RETRACTED,
            source="review",
            actor=actor,
            note=reason,
            retracted_by=actor,
            retract_reason=reason[:2000],
            retracted_at=now,
            next_attempt_at=now + dispatch_lease(),
        )
        webhooks.emit(
            "publication.retracted",
            publication_data(publication),
            request_id=publication.request_id,
        )
        enqueue_after_commit("withdraw_publication", publication.pk)
    log.info("publication %s retracted by %s: %s", publication_id, actor, reason)
    return publication


def withdraw(*, publication_id: int) -> None:
    """Remove a retracted publication's file and rewrite its manifest with the retraction."""
    publication = Publication.objects.filter(pk=publication_id).first()
    if publication is None or publication.state != P.RETRACTED or publication.withdrawn_at:
        return
    storage = targets.storage_for(publication.target)
    document = {**publication.manifest, "publication": manifest.publication_block(publication)}
    storage.delete(publication.key)
    _write_manifest(storage, publication.manifest_key, document)
    Publication.objects.filter(pk=publication_id, withdrawn_at=None).update(
        withdrawn_at=timezone.now(), manifest=document, next_attempt_at=None
    )


def send_due_publications(now: datetime, *, limit: int) -> int:
    """Send again the copies and withdrawals whose job was lost; return how many."""
    jobs = {
        "publish_output": Publication.objects.filter(state=P.PENDING),
        "withdraw_publication": Publication.objects.filter(state=P.RETRACTED, withdrawn_at=None),
    }
    sent = 0
    for job, queryset in jobs.items():
        with transaction.atomic():
            ids = list(
                queryset.filter(next_attempt_at__lte=now)
                .select_for_update(skip_locked=True)
                .order_by("next_attempt_at")
                .values_list("pk", flat=True)[: max(0, min(BATCH, limit - sent))]
            )
            Publication.objects.filter(pk__in=ids).update(next_attempt_at=now + dispatch_lease())
        for publication_id in ids:
            enqueue(job, publication_id)
        sent += len(ids)
    return sent


def publication_data(publication: Publication) -> dict:
    """What subscribers are told of a publication."""
    return {
        "publication_id": publication.pk,
        "request_id": publication.request_id,
        "output_id": publication.output_id,
        "target": publication.target,
        "key": publication.key,
        "manifest_key": publication.manifest_key,
        "sha256": publication.sha256,
        "bytes": publication.bytes,
        "credentials": publication.credentials,
        "state": publication.state,
        "retract_reason": publication.retract_reason,
        "published_at": publication.published_at.isoformat() if publication.published_at else None,
        "download_url": settings.PUBLIC_BASE_URL + reverse("published_file", args=[publication.pk]),
    }
