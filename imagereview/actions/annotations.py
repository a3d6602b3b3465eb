"""Notes on outputs: a pin or a box with a comment, written by a reviewer or by a guest
through a share link, resolved and reopened by reviewers.
"""

import logging
import math
from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from imagereview.models import Annotation, Asset, GuestLink
from imagereview.queries.annotations import output_annotations
from imagereview.roles import is_reviewer

log = logging.getLogger(__name__)

MAX_COMMENT = 2000
# Rounding in the browser may put a box's edge a hair past the image's.
EDGE_TOLERANCE = 1e-6


class AnnotationRefused(Exception):
    """A note the rules do not allow; the message is for the person who wrote it."""


def add_annotation(
    *,
    output: Asset,
    author: AbstractBaseUser | None = None,
    guest_link: GuestLink | None = None,
    guest_name: str = "",
    shape: str,
    x: float,
    y: float,
    width: float = 0,
    height: float = 0,
    comment: str,
) -> Annotation:
    """Pin a note to a point of an output, or to a box on it, in 0-1 image coordinates.

    The writer is a reviewer (`author`) or a guest (`guest_link` and the name they gave).
    """
    if output.kind != Asset.Kind.OUTPUT:
        raise AnnotationRefused("Notes can only be put on outputs.")
    if (author is None) == (guest_link is None):
        raise AnnotationRefused("A note is written by a reviewer or by a guest, not both.")
    if author is not None and not is_reviewer(author):
        raise AnnotationRefused("Only reviewers can add notes.")
    guest_name = guest_name.strip()
    if guest_link is not None:
        _check_guest(guest_link, output, guest_name)
    comment = comment.strip()
    if not comment:
        raise AnnotationRefused("Write what the note is about.")
    if len(comment) > MAX_COMMENT:
        raise AnnotationRefused(
            f"A note can have at most {MAX_COMMENT:,} characters; this one has {len(comment):,}."
        )
    x, y, width, height = _place(shape, x, y, width, height)
    with transaction.atomic():
        annotation = Annotation.objects.create(
            output=output,
            shape=shape,
            x=x,
            y=y,
            width=width,
            height=height,
            comment=comment,
            author=author,
            guest_link=guest_link,
            guest_name=guest_name if guest_link else "",
        )
    log.info("note %s (%s) on output %s by %s", annotation.pk, shape, output.pk, annotation.by)
    return annotation


def _place(shape: str, x: float, y: float, width: float, height: float) -> tuple[float, ...]:
    """The note's coordinates, checked to lie on the image; a box's edges clipped to it."""
    if shape not in Annotation.Shape.values:
        raise AnnotationRefused("A note is a pin or a box.")
    numbers = (x, y, width, height)
    if not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers):
        raise AnnotationRefused("The note's position is not a number.")
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise AnnotationRefused("The note must be on the image.")
    if shape == Annotation.Shape.PIN:
        return x, y, 0.0, 0.0
    if width <= 0 or height <= 0:
        raise AnnotationRefused("A box needs a width and a height.")
    if x + width > 1 + EDGE_TOLERANCE or y + height > 1 + EDGE_TOLERANCE:
        raise AnnotationRefused("The box must fit inside the image.")
    return x, y, min(width, 1 - x), min(height, 1 - y)


def _check_guest(guest_link: GuestLink, output: Asset, guest_name: str) -> None:
    if guest_link.revoked_at is not None or guest_link.expires_at <= timezone.now():
        raise AnnotationRefused("This link has ended.")
    if not guest_link.may_comment:
        raise AnnotationRefused("This link does not allow notes.")
    if not guest_link.requests.filter(pk=output.request_id).exists():
        raise AnnotationRefused("This link does not share that image.")
    if not guest_name:
        raise AnnotationRefused("Give your name with the note.")
    if len(guest_name) > 100:
        raise AnnotationRefused("A name can have at most 100 characters.")


def resolve_annotation(*, annotation_id: int, reviewer: AbstractBaseUser) -> Annotation:
    """Mark a note done; resolving a resolved note changes nothing."""
    with transaction.atomic():
        annotation = _locked(annotation_id, reviewer)
        if annotation.resolved_at is None:
            annotation.resolved_at = timezone.now()
            annotation.resolved_by = reviewer
            annotation.save(update_fields=["resolved_at", "resolved_by"])
    return annotation


def reopen_annotation(*, annotation_id: int, reviewer: AbstractBaseUser) -> Annotation:
    """Make a resolved note open again."""
    with transaction.atomic():
        annotation = _locked(annotation_id, reviewer)
        if annotation.resolved_at is not None:
            annotation.resolved_at = None
            annotation.resolved_by = None
            annotation.save(update_fields=["resolved_at", "resolved_by"])
    return annotation


def _locked(annotation_id: int, reviewer: AbstractBaseUser) -> Annotation:
    if not is_reviewer(reviewer):
        raise AnnotationRefused("Only reviewers can resolve notes.")
    annotation = Annotation.objects.select_for_update().filter(pk=annotation_id).first()
    if annotation is None:
        raise AnnotationRefused("This note does not exist.")
    return annotation


def notes_to_answer(output: Asset, annotation_ids: Sequence[int]) -> list[Annotation]:
    """The open notes on `output` a revision is asked to answer, numbered, in number order.

    Refuse ids that are not open notes of this output: the page that sent them is stale.
    """
    wanted = set(annotation_ids)
    notes = [note for note in output_annotations(output) if note.pk in wanted]
    if len(notes) != len(wanted) or any(note.resolved_at or note.answered_by_id for note in notes):
        raise AnnotationRefused(
            "Some of these notes were resolved or answered since the page was shown: "
            "reload it and fill from the notes again."
        )
    return sorted(notes, key=lambda note: note.number)
