"""Every state change of a request, a generation or a publication goes through `move`.

It checks the change is allowed, saves the state with the fields that go with it, and writes
the audit event in the same transaction.
"""

from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from imagereview.models import Event, Generation, ImageRequest, Publication, Stage

G = Generation.State
R = ImageRequest.Status
P = Publication.State
Row = TypeVar("Row", Generation, ImageRequest, Publication)
T = TypeVar("T")
Stateful = Generation | ImageRequest | Publication

ALLOWED: dict[type, dict[str, set[str]]] = {
    Generation: {
        G.QUEUED: {G.SUBMITTING, G.SUBMITTED, G.FAILED},
        G.SUBMITTING: {G.SUBMITTED, G.QUEUED, G.FAILED},
        G.SUBMITTED: {G.SUCCEEDED, G.FAILED, G.TIMED_OUT},
        G.SUCCEEDED: {G.STORED, G.FAILED},
        G.TIMED_OUT: {G.SUCCEEDED, G.FAILED},
        G.STORED: set(),
        G.FAILED: set(),
    },
    ImageRequest: {
        R.GENERATING: {R.IN_REVIEW, R.FAILED},
        R.IN_REVIEW: {R.APPROVED, R.REJECTED, R.CHANGES_REQUESTED, R.GENERATING},
        # Back to review only by an undo within its short window.
        R.APPROVED: {R.IN_REVIEW},
        R.REJECTED: {R.IN_REVIEW},
        R.CHANGES_REQUESTED: set(),
        R.FAILED: {R.GENERATING, R.IN_REVIEW},
    },
    Publication: {
        P.PENDING: {P.PUBLISHED, P.FAILED},
        P.PUBLISHED: {P.RETRACTED},
        # An admin may try a failed publication again.
        P.FAILED: {P.PENDING},
        P.RETRACTED: set(),
    },
}


class TransitionNotAllowed(Exception):
    pass


def lock(model: type[Row], pk: int) -> Row | None:
    """Read a row inside the current transaction and hold its lock until the end of it."""
    return by_pk(model.objects.select_for_update(), pk)


def by_pk(queryset: QuerySet[T], pk: int) -> T | None:
    """The row with this primary key, or None: `.first()` without the ORDER BY it adds,
    whose compiling costs more than the lookup on the paths run for every generation."""
    rows = list(queryset.filter(pk=pk).order_by())
    return rows[0] if rows else None


def _state_field(obj: Stateful) -> str:
    return "status" if isinstance(obj, ImageRequest) else "state"


def state_of(obj: Stateful) -> str:
    return getattr(obj, _state_field(obj))


def _event_fields(obj: Stateful) -> dict[str, Any]:
    """The audit event's subject and the rows it belongs to."""
    if isinstance(obj, Generation):
        return {"subject": "generation", "request_id": obj.request_id, "generation_id": obj.pk}
    if isinstance(obj, Publication):
        return {"subject": "publication", "request_id": obj.request_id, "publication_id": obj.pk}
    return {"subject": "request", "request_id": obj.pk}


def can_move(obj: Stateful, to: str) -> bool:
    return to in ALLOWED[type(obj)][state_of(obj)]


def move(
    obj: Stateful,
    to: str,
    *,
    source: str,
    actor: AbstractBaseUser | None = None,
    note: str = "",
    **changes: Any,
) -> Event:
    """Move `obj` to state `to`, saving `changes` with it, and record the event.

    Call inside `transaction.atomic`, holding the row lock (`select_for_update`), on a row
    read inside that transaction.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("move() must run inside transaction.atomic")
    before = state_of(obj)
    if not can_move(obj, to):
        raise TransitionNotAllowed(f"{type(obj).__name__} {obj.pk}: {before} -> {to}")
    state_field = _state_field(obj)
    setattr(obj, state_field, to)
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.save(update_fields=[state_field, "updated_at", *changes])
    return Event.objects.create(
        **_event_fields(obj),
        from_state=before,
        to_state=to,
        actor=actor,
        source=source,
        note=note[:2000],
    )


def record_creation(
    obj: Stateful, *, source: str, actor: AbstractBaseUser | None = None, note: str = ""
) -> Event:
    """Record the birth of `obj` in its first state."""
    return Event.objects.create(
        **_event_fields(obj),
        to_state=state_of(obj),
        note=note[:2000],
        actor=actor,
        source=source,
    )


def move_stage(
    image_request: ImageRequest,
    stage: Stage,
    *,
    actor: AbstractBaseUser | None = None,
    note: str = "",
    **changes: Any,
) -> Event:
    """Move a request to another stage of its workflow, saving `changes` with it, and record
    the event. Its status stays: the event's subject is the stage, so that the figures of
    requests leaving review do not count it.

    Call inside `transaction.atomic`, holding the request's row lock.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("move_stage() must run inside transaction.atomic")
    before = image_request.stage
    image_request.stage = stage
    for name, value in changes.items():
        setattr(image_request, name, value)
    image_request.save(update_fields=["stage", "updated_at", *changes])
    moved = f"stage {before.name if before else '-'} -> {stage.name}"
    return Event.objects.create(
        subject="stage",
        request_id=image_request.pk,
        from_state=image_request.status,
        to_state=image_request.status,
        actor=actor,
        source="review",
        note=f"{moved} ({note})" if note else moved,
    )
