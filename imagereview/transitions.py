"""Every state change of a request or a generation goes through `move`.

It checks the change is allowed, saves the state with the fields that go with it, and writes
the audit event in the same transaction.
"""

from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from imagereview.models import Event, Generation, ImageRequest

G = Generation.State
R = ImageRequest.Status
Row = TypeVar("Row", Generation, ImageRequest)

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
}


class TransitionNotAllowed(Exception):
    pass


def lock(model: type[Row], pk: int) -> Row | None:
    """Read a row inside the current transaction and hold its lock until the end of it."""
    return model.objects.select_for_update().filter(pk=pk).first()


def state_of(obj: Generation | ImageRequest) -> str:
    return obj.state if isinstance(obj, Generation) else obj.status


def can_move(obj: Generation | ImageRequest, to: str) -> bool:
    return to in ALLOWED[type(obj)][state_of(obj)]


def move(
    obj: Generation | ImageRequest,
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
    state_field = "state" if isinstance(obj, Generation) else "status"
    setattr(obj, state_field, to)
    for name, value in changes.items():
        setattr(obj, name, value)
    obj.save(update_fields=[state_field, "updated_at", *changes])
    if isinstance(obj, Generation):
        request_id, generation_id, subject = obj.request_id, obj.pk, "generation"
    else:
        request_id, generation_id, subject = obj.pk, None, "request"
    return Event.objects.create(
        request_id=request_id,
        generation_id=generation_id,
        subject=subject,
        from_state=before,
        to_state=to,
        actor=actor,
        source=source,
        note=note[:2000],
    )


def record_creation(
    obj: Generation | ImageRequest, *, source: str, actor: AbstractBaseUser | None = None
) -> Event:
    """Record the birth of `obj` in its first state."""
    is_generation = isinstance(obj, Generation)
    return Event.objects.create(
        request_id=obj.request_id if is_generation else obj.pk,
        generation_id=obj.pk if is_generation else None,
        subject="generation" if is_generation else "request",
        to_state=state_of(obj),
        actor=actor,
        source=source,
    )
