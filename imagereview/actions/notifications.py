"""Notifications: what each user is told, listed in the app and emailed as they choose.

A notification is written in the transaction of whatever caused it; its email is a job sent
after commit, so a rolled-back change tells nobody. Requesters hear of their own requests
only, reviewers get counts of what awaits review, admins get alerts.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Min, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from imagereview.actions.emails import absolute
from imagereview.jobs import enqueue_after_commit
from imagereview.models import (
    Alert,
    Event,
    Generation,
    ImageRequest,
    Notification,
    NotificationPreference,
)
from imagereview.queries.outcomes import request_outcome
from imagereview.roles import REVIEWERS
from imagereview.transitions import lock

R = ImageRequest.Status
Digest = NotificationPreference.Digest

REQUEST_DECIDED = "request_decided"
REQUEST_FAILED = "request_failed"
REVIEW_DIGEST = "review_digest"
ALERT_OPENED = "alert_opened"
ALERT_RESOLVED = "alert_resolved"

DECIDED = (R.APPROVED, R.REJECTED, R.CHANGES_REQUESTED)
DIGEST_PERIODS = {Digest.HOURLY: timedelta(hours=1), Digest.DAILY: timedelta(days=1)}
# The digest schedule ticks every few minutes: a digest due a little after the tick that
# just missed it would otherwise slip by a whole tick each period.
DIGEST_SLACK = timedelta(minutes=1)
# An email still unsent this long after its notification lost its job (a broker that forgot
# it); one older than a day is stale news and stays in the app only.
EMAIL_LEASE = timedelta(minutes=10)
EMAIL_GIVE_UP = timedelta(days=1)
# The preference that lets each kind be emailed; a digest is emailed whenever it is sent.
EMAIL_PREFERENCE = {
    REQUEST_DECIDED: "email_decisions",
    REQUEST_FAILED: "email_decisions",
    ALERT_OPENED: "email_alerts",
    ALERT_RESOLVED: "email_alerts",
}


def preferences_for(user: AbstractBaseUser) -> NotificationPreference:
    """The user's preferences, created with the defaults on first use."""
    preference, _ = NotificationPreference.objects.get_or_create(user=user)
    return preference


def notify(
    *,
    recipient: AbstractBaseUser,
    kind: str,
    subject: str,
    body: str,
    url: str,
    request: ImageRequest | None = None,
    alert: Alert | None = None,
    email: bool,
) -> Notification:
    """Write an in-app notification and, when `email`, send it by email once this commits."""
    notification = Notification.objects.create(
        recipient=recipient,
        kind=kind,
        subject=subject[:200],
        body=body,
        url=url[:500],
        request=request,
        alert=alert,
    )
    if email and recipient.email:
        enqueue_after_commit("send_notification_email", notification.pk)
    return notification


# Requesters: what became of their request.


def notify_request_decided(image_request_id: int) -> None:
    """Tell the requester how their request was decided, output by output.

    Once per decision: a request decided again after an undo is told again.
    """
    with transaction.atomic():
        # Held until the notification is written, so that two runs cannot both write one.
        image_request = lock(ImageRequest, image_request_id)
        if image_request is None or image_request.status not in DECIDED:
            return
        if _told_since_last_move(image_request, REQUEST_DECIDED):
            return
        _tell_decision(image_request)


def _tell_decision(image_request: ImageRequest) -> None:
    outcome = request_outcome(image_request, viewer=image_request.requester)
    lines = [f"Request #{image_request.pk}: {outcome.standing_words}.", outcome.requirement + "."]
    for variant in outcome.variants:
        for item in variant.outputs:
            lines.append("")
            lines.append(f"{variant.label}, output {item.output.index + 1}: {item.verdict_words}")
            for note in item.notes:
                if note.reason:
                    lines.append(f"  Reason: {note.reason}")
                if note.comment:
                    lines.append(f"  Comment ({note.by}): {note.comment}")
            lines.append(f"  {absolute(_output_url(image_request, item.output.pk))}")
    if outcome.revision:
        lines += ["", f"Revision #{outcome.revision.pk} has started with the changed prompt."]
    notify(
        recipient=image_request.requester,
        kind=REQUEST_DECIDED,
        subject=f"Request #{image_request.pk} {outcome.standing_words.lower()}: "
        f"{_prompt_line(image_request)}",
        body="\n".join(lines),
        url=image_request.get_absolute_url(),
        request=image_request,
        email=preferences_for(image_request.requester).email_decisions,
    )


def notify_request_failed(image_request_id: int) -> None:
    """Tell the requester that their request failed, and why."""
    with transaction.atomic():
        image_request = lock(ImageRequest, image_request_id)
        if image_request is None or image_request.status != R.FAILED:
            return
        if _told_since_last_move(image_request, REQUEST_FAILED):
            return
        _tell_failure(image_request)


def _tell_failure(image_request: ImageRequest) -> None:
    reasons = sorted(
        {
            message or "the provider did not finish in time"
            for message in image_request.generations.filter(
                state__in=(Generation.State.FAILED, Generation.State.TIMED_OUT)
            ).values_list("failure_message", flat=True)
        }
    )
    lines = [f"Request #{image_request.pk} could not be generated."]
    lines += [f"- {reason}" for reason in reasons]
    lines += ["", absolute(image_request.get_absolute_url())]
    notify(
        recipient=image_request.requester,
        kind=REQUEST_FAILED,
        subject=f"Request #{image_request.pk} failed: {_prompt_line(image_request)}",
        body="\n".join(lines),
        url=image_request.get_absolute_url(),
        request=image_request,
        email=preferences_for(image_request.requester).email_decisions,
    )


def _output_url(image_request: ImageRequest, output_id: int) -> str:
    return f"{image_request.get_absolute_url()}#output-{output_id}"


def _prompt_line(image_request: ImageRequest) -> str:
    prompt = " ".join(image_request.prompt.split())
    return prompt if len(prompt) <= 60 else prompt[:59] + "…"


def _told(image_request: ImageRequest, kind: str) -> bool:
    return Notification.objects.filter(
        recipient_id=image_request.requester_id, request=image_request, kind=kind
    ).exists()


def _told_since_last_move(image_request: ImageRequest, kind: str) -> bool:
    """Whether the requester was told of the request's current status since it took it."""
    moved = (
        Event.objects.filter(
            request=image_request, subject="request", to_state=image_request.status
        )
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )
    told = Notification.objects.filter(
        recipient_id=image_request.requester_id, request=image_request, kind=kind
    )
    if moved is not None:
        told = told.filter(created_at__gte=moved)
    return told.exists()


# Reviewers: what awaits review.


def reviewers() -> list[AbstractBaseUser]:
    """Active users who review: members of the reviewers group, and superusers."""
    users = get_user_model().objects.filter(is_active=True)
    return list(users.filter(Q(is_superuser=True) | Q(groups__name=REVIEWERS)).distinct())


def send_review_digests(now: datetime | None = None) -> int:
    """Send each reviewer whose schedule is due a digest of what awaits review; return how many.

    Immediate: whenever a request has come into review since their last digest. Hourly and
    daily: once a period while anything awaits. Never when nothing awaits.
    """
    now = now or timezone.now()
    awaiting = ImageRequest.objects.filter(status=R.IN_REVIEW)
    figures = awaiting.aggregate(total=Count("id"), oldest=Min("created_at"))
    if not figures["total"]:
        return 0
    overdue_before = now - timedelta(hours=settings.REVIEW_OVERDUE_HOURS)
    by_mode = dict(awaiting.values_list("mode").annotate(n=Count("id")).order_by())
    overdue = awaiting.filter(created_at__lt=overdue_before).count()
    subject, body = _digest_text(figures["total"], figures["oldest"], overdue, by_mode, now)
    sent = 0
    for reviewer in reviewers():
        preference_id = preferences_for(reviewer).pk
        with transaction.atomic():
            preference = lock(NotificationPreference, preference_id)
            if not _digest_due(preference, now):
                continue
            notify(
                recipient=reviewer,
                kind=REVIEW_DIGEST,
                subject=subject,
                body=body,
                url=reverse("review_queue") + "?sort=oldest",
                email=True,
            )
            preference.last_digest_at = now
            preference.save(update_fields=["last_digest_at", "updated_at"])
        sent += 1
    return sent


def _digest_due(preference: NotificationPreference, now: datetime) -> bool:
    last = preference.last_digest_at
    if preference.review_digest == Digest.OFF:
        return False
    if preference.review_digest == Digest.IMMEDIATE:
        arrived = Event.objects.filter(
            subject="request", to_state=R.IN_REVIEW, request__status=R.IN_REVIEW
        )
        return last is None or arrived.filter(created_at__gt=last).exists()
    period = DIGEST_PERIODS[preference.review_digest]
    return last is None or now - last >= period - DIGEST_SLACK


def _digest_text(
    total: int, oldest: datetime, overdue: int, by_mode: dict[str, int], now: datetime
) -> tuple[str, str]:
    plural = "s" if total != 1 else ""
    subject = f"{total} request{plural} await{'' if plural else 's'} review"
    if overdue:
        subject += f", {overdue} overdue"
    lines = []
    if overdue:
        lines.append(
            f"Overdue: {overdue} waiting longer than {settings.REVIEW_OVERDUE_HOURS} hours."
        )
    lines.append(f"Awaiting review: {total}")
    modes = dict(ImageRequest.Mode.choices)
    lines += [f"- {modes.get(mode, mode)}: {n}" for mode, n in sorted(by_mode.items())]
    lines.append(f"Oldest waiting: {timesince(oldest, now)}")
    lines += ["", absolute(reverse("review_queue") + "?sort=oldest")]
    return subject, "\n".join(lines)


# Admins: alerts as they open and resolve.


def notify_alert(alert: Alert, *, opened: bool) -> None:
    """Tell every active staff user that an alert opened or resolved, once each."""
    kind = ALERT_OPENED if opened else ALERT_RESOLVED
    staff = get_user_model().objects.filter(is_active=True, is_staff=True)
    verb = "opened" if opened else "resolved"
    subject = f"[{alert.get_severity_display()}] Alert {verb}: {alert.title}"
    lines = [alert.title]
    if alert.detail:
        lines.append(alert.detail)
    if alert.value is not None:
        facts = [f"value {alert.value:g}"]
        if alert.baseline is not None:
            facts.append(f"baseline {alert.baseline:g}")
        if alert.threshold is not None:
            facts.append(f"threshold {alert.threshold:g}")
        lines.append(", ".join(facts).capitalize() + ".")
    moment = alert.opened_at if opened else alert.resolved_at
    if moment:
        lines.append(f"{verb.capitalize()} at {timezone.localtime(moment):%Y-%m-%d %H:%M %Z}.")
    url = alert.link or _page_url("alerts")
    if url:
        lines += ["", absolute(url)]
    with transaction.atomic():
        # Held while writing, so that two runs cannot both tell the same person.
        lock(Alert, alert.pk)
        told = set(
            Notification.objects.filter(alert=alert, kind=kind).values_list(
                "recipient_id", flat=True
            )
        )
        for user in staff:
            if user.pk in told:
                continue
            notify(
                recipient=user,
                kind=kind,
                subject=subject,
                body="\n".join(lines),
                url=url,
                alert=alert,
                email=preferences_for(user).email_alerts,
            )


def _page_url(name: str) -> str:
    try:
        return reverse(name)
    except NoReverseMatch:
        return ""


def resend_lost_emails(now: datetime | None = None) -> int:
    """Enqueue again the emails whose job was lost; return how many.

    Sending twice is harmless: the job sends a notification's email at most once.
    """
    now = now or timezone.now()
    unsent = list(
        Notification.objects.filter(
            emailed_at__isnull=True,
            created_at__lt=now - EMAIL_LEASE,
            created_at__gte=now - EMAIL_GIVE_UP,
        ).exclude(recipient__email="")
    )
    preferences = {
        p.user_id: p
        for p in NotificationPreference.objects.filter(user_id__in={n.recipient_id for n in unsent})
    }
    resent = 0
    for notification in unsent:
        wanted = EMAIL_PREFERENCE.get(notification.kind)
        preference = preferences.get(notification.recipient_id) or NotificationPreference()
        if wanted is None or getattr(preference, wanted):
            enqueue_after_commit("send_notification_email", notification.pk)
            resent += 1
    return resent


# The in-app list.


def mark_read(*, recipient: AbstractBaseUser, notification_id: int | None = None) -> int:
    """Mark one of the recipient's notifications read, or all of them; return how many."""
    unread = Notification.objects.filter(recipient=recipient, read_at__isnull=True)
    if notification_id is not None:
        unread = unread.filter(pk=notification_id)
    return unread.update(read_at=timezone.now())
