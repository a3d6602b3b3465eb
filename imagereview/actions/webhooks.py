"""Signed webhooks: events written with the change they announce, delivered by the cluster.

`emit` runs inside the transaction that made the change, so an event exists exactly when its
change does. Each delivery (one event to one endpoint) is a job that POSTs the event signed
the Standard Webhooks way, with the event's id as `webhook-id` on every attempt to every
endpoint, so a receiver can drop what it already has. A failed attempt is retried on
WEBHOOK_RETRY_SCHEDULE with jitter; when the schedule runs out the delivery fails and its
endpoint is marked failing until a delivery to it succeeds again.
"""

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from imagereview.jobs import dispatch_lease, enqueue, enqueue_after_commit
from imagereview.models import (
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    new_webhook_secret,
)
from imagereview.providers.webhooks import PostResult, post_webhook
from imagereview.transitions import lock

log = logging.getLogger(__name__)

D = WebhookDelivery.State

EVENT_TYPES = {
    "output.approved": "An output was approved by its reviewers.",
    "output.rejected": "An output was rejected, with the reason.",
    "request.changes_requested": "A reviewer asked for changes and a revision was started.",
    "output.published": "An approved output was published, with its manifest.",
    "publication.retracted": "A published output was retracted, with the reason.",
    "request.failed": "A request failed: its images could not be generated.",
}
# Retries come this much earlier or later than the schedule says, so that deliveries that
# failed together do not all come back together.
JITTER = 0.1
# An attempt with no outcome this long after it began was cut short (its worker died): the
# timeout bounds the POST, this margin the writes around it.
ATTEMPT_MARGIN = timedelta(seconds=10)


def emit(
    event_type: str, data: dict, *, request_id: int | None = None, queue: bool = True
) -> WebhookEvent:
    """Record an event and one delivery to each active endpoint that wants its type.

    Call inside the transaction that made the change: deliveries start once it commits, and
    nothing is told of a change that was rolled back. Without `queue`, the caller (a job
    already on the cluster) makes the first attempts itself once it has committed; should
    it die first, the dispatcher sends them when their lease runs out.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        # Round-tripped so that dates and decimals are stored as they will be sent.
        "data": json.loads(json.dumps(data, cls=DjangoJSONEncoder)),
    }
    with transaction.atomic():
        event = WebhookEvent.objects.create(type=event_type, payload=payload, request_id=request_id)
        for endpoint in WebhookEndpoint.objects.filter(active=True):
            if not endpoint.wants(event_type):
                continue
            delivery = WebhookDelivery.objects.create(
                event=event, endpoint=endpoint, next_attempt_at=now + dispatch_lease()
            )
            if queue:
                enqueue_after_commit("deliver_webhook", delivery.pk)
    return event


@dataclass(frozen=True)
class _Claim:
    """An attempt this worker owns: everything needed to make it outside the transaction."""

    delivery_id: int
    attempt_id: int
    url: str
    secret: str
    event_id: str
    body: str


def deliver(*, delivery_id: int) -> None:
    """Make the next attempt of a pending delivery, if one is due, and record what came of it.

    Safe to run twice or side by side: the attempt is claimed under the row lock, and the
    POST happens outside any transaction.
    """
    claim = _claim_attempt(delivery_id, timezone.now())
    if claim is None:
        return
    try:
        headers = signed_headers(
            secret=claim.secret, event_id=claim.event_id, body=claim.body, at=timezone.now()
        )
    except (ValueError, EmptyWebhookSecretError) as error:
        # A secret edited by hand into something that is not base64 fails this attempt only.
        result = PostResult(status=None, duration_ms=0, error=f"cannot sign: {error!r}")
    else:
        result = post_webhook(claim.url, claim.body.encode(), headers)
    _record_outcome(claim, result)


def signed_headers(*, secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: its id, its moment and their signature."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
        "content-type": "application/json",
    }


def _claim_attempt(delivery_id: int, now: datetime) -> _Claim | None:
    with transaction.atomic():
        delivery = lock(WebhookDelivery, delivery_id)
        if delivery is None or delivery.state != D.PENDING:
            return None
        endpoint = delivery.endpoint
        # A paused endpoint keeps its deliveries pending until it is active again.
        if not endpoint.active:
            return None
        latest = delivery.attempt_log.order_by("-number").first()
        if latest is not None and _is_open(latest):
            if now < latest.created_at + _attempt_window():
                return None  # another worker is making this attempt right now
            _close(latest, PostResult(None, 0, error="cut short: no outcome was recorded"))
            delivery.last_status = None
            _after_failure(delivery, now)
            if delivery.state != D.PENDING:
                return None
        if not _is_due(delivery, latest, now):
            return None
        attempt = WebhookAttempt.objects.create(
            delivery=delivery, number=latest.number + 1 if latest else 1
        )
        delivery.attempts += 1
        # Not swept again while the attempt runs; swept once it has been given up on.
        delivery.next_attempt_at = now + _attempt_window()
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
        event = delivery.event
        body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)
        return _Claim(delivery.pk, attempt.pk, endpoint.url, endpoint.secret, event.event_id, body)


def _attempt_window() -> timedelta:
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT) + ATTEMPT_MARGIN


def _is_open(attempt: WebhookAttempt) -> bool:
    return attempt.status_code is None and not attempt.error


def _is_due(delivery: WebhookDelivery, latest: WebhookAttempt | None, now: datetime) -> bool:
    """Whether the schedule allows the next attempt: a stray copy of a job may run early."""
    if delivery.attempts == 0 or latest is None:
        return True
    return now >= latest.created_at + _retry_delay(delivery.attempts) * (1 - JITTER)


def _retry_delay(attempts: int) -> timedelta:
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    return timedelta(seconds=schedule[min(attempts, len(schedule)) - 1] if schedule else 0)


def _close(attempt: WebhookAttempt, result: PostResult) -> None:
    attempt.status_code = result.status
    attempt.duration_ms = result.duration_ms
    attempt.response_excerpt = result.excerpt
    attempt.error = result.error
    attempt.save(update_fields=["status_code", "duration_ms", "response_excerpt", "error"])


def _record_outcome(claim: _Claim, result: PostResult) -> None:
    now = timezone.now()
    with transaction.atomic():
        delivery = lock(WebhookDelivery, claim.delivery_id)
        attempt = WebhookAttempt.objects.filter(pk=claim.attempt_id).first()
        if delivery is None or attempt is None or not _is_open(attempt):
            log.warning("webhook attempt %s ended after it was given up on", claim.attempt_id)
            return
        _close(attempt, result)
        delivery.last_status = result.status
        if not result.delivered:
            _after_failure(delivery, now)
            return
        delivery.state = D.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        delivery.save(
            update_fields=["state", "delivered_at", "next_attempt_at", "last_status", "updated_at"]
        )
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).exclude(failing_since=None).update(
            failing_since=None
        )
    log.info("webhook %s delivered to endpoint %s", claim.event_id, delivery.endpoint_id)


def _after_failure(delivery: WebhookDelivery, now: datetime) -> None:
    """Schedule the next attempt, or fail the delivery and its endpoint when none is left.

    Call holding the delivery's row lock, with `attempts` counting the failed attempt.
    """
    fields = ["state", "next_attempt_at", "last_status", "updated_at"]
    if delivery.attempts > len(settings.WEBHOOK_RETRY_SCHEDULE):
        delivery.state = D.FAILED
        delivery.next_attempt_at = None
        delivery.save(update_fields=fields)
        WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since=None).update(
            failing_since=now
        )
        log.warning("webhook delivery %s failed after %s attempts", delivery.pk, delivery.attempts)
        return
    jitter = random.uniform(1 - JITTER, 1 + JITTER)
    delivery.next_attempt_at = now + _retry_delay(delivery.attempts) * jitter
    delivery.save(update_fields=fields)


def send_due_deliveries(now: datetime, *, limit: int) -> int:
    """Enqueue up to `limit` pending deliveries whose next attempt is due; return how many."""
    with transaction.atomic():
        # Several dispatchers may run: each takes rows the others have not locked.
        ids = list(
            WebhookDelivery.objects.filter(
                state=D.PENDING, next_attempt_at__lte=now, endpoint__active=True
            )
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        # Leased: should the job be lost with its worker, it is due again after the lease.
        WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=now + dispatch_lease())
    for delivery_id in ids:
        enqueue("deliver_webhook", delivery_id)
    return len(ids)


def redeliver(*, delivery_id: int, actor: AbstractBaseUser | None) -> WebhookDelivery:
    """Send a delivered or failed event again on a fresh schedule, under the same webhook-id.

    A delivery still pending is already on its way and is left as it is.
    """
    with transaction.atomic():
        delivery = lock(WebhookDelivery, delivery_id)
        if delivery is None:
            raise WebhookDelivery.DoesNotExist(f"no webhook delivery {delivery_id}")
        if delivery.state == D.PENDING:
            return delivery
        before = delivery.state
        delivery.state = D.PENDING
        delivery.attempts = 0
        delivery.delivered_at = None
        delivery.next_attempt_at = timezone.now() + dispatch_lease()
        delivery.save(
            update_fields=["state", "attempts", "delivered_at", "next_attempt_at", "updated_at"]
        )
        event = delivery.event
        Event.objects.create(
            request_id=event.request_id,
            subject="webhook",
            from_state=before,
            to_state=D.PENDING,
            actor=actor,
            source="admin",
            note=f"{event.type} {event.event_id} sent again to endpoint {delivery.endpoint_id}",
        )
        enqueue_after_commit("deliver_webhook", delivery.pk)
    return delivery


def redeliver_failed(*, endpoint_id: int, actor: AbstractBaseUser | None) -> int:
    """Send every failed delivery of an endpoint again; return how many."""
    ids = WebhookDelivery.objects.filter(endpoint_id=endpoint_id, state=D.FAILED).values_list(
        "pk", flat=True
    )
    count = 0
    for delivery_id in list(ids):
        if redeliver(delivery_id=delivery_id, actor=actor).state == D.PENDING:
            count += 1
    return count


def save_endpoint(
    *,
    endpoint_id: int | None,
    url: str,
    description: str,
    event_types: list[str],
    active: bool,
    actor: AbstractBaseUser | None,
) -> WebhookEndpoint:
    """Add an endpoint (`endpoint_id` None) or change one; its secret stays as it is."""
    fields = {"url": url, "description": description, "event_types": event_types}
    with transaction.atomic():
        if endpoint_id is None:
            endpoint = WebhookEndpoint.objects.create(**fields, active=active, created_by=actor)
            log.info("%s added webhook endpoint %s", actor, endpoint.pk)
            return endpoint
        endpoint = lock(WebhookEndpoint, endpoint_id)
        for name, value in {**fields, "active": active}.items():
            setattr(endpoint, name, value)
        endpoint.save(update_fields=[*fields, "active", "updated_at"])
    return endpoint


def rotate_secret(*, endpoint_id: int, actor: AbstractBaseUser | None) -> WebhookEndpoint:
    """Give an endpoint a new signing secret; attempts from now on are signed with it."""
    with transaction.atomic():
        endpoint = lock(WebhookEndpoint, endpoint_id)
        endpoint.secret = new_webhook_secret()
        endpoint.save(update_fields=["secret", "updated_at"])
    log.info("%s rotated the secret of webhook endpoint %s", actor, endpoint_id)
    return endpoint
