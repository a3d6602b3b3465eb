"""Notifications: what each user is told, listed in the app and emailed as they choose.

A notification is written in the transaction of whatever caused it; its email is a job sent
after commit, so a rolled-back change tells nobody. Requesters hear of their own requests
only, reviewers get counts of what awaits review, admins get alerts.

A decision that may still be undone is told only once it cannot be: its notification is held
(`deliver_after`) until the undo window has passed, withdrawn by an undo, and emailed by the
schedule once due.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from imagereview.actions.emails import absolute
from imagereview.due import due_state
from imagereview.jobs import enqueue_after_commit
from imagereview.models import (
    Alert,
    Decision,
    Event,
    Generation,
    ImageRequest,
    Notification,
    NotificationPreference,
)
from imagereview.queries.notifications import delivered_to
from imagereview.queries.outcomes import request_outcome
from imagereview.queries.stages import in_stages_of
from imagereview.roles import REVIEWERS
from imagereview.transitions import lock
from imagereview.verdicts import UNDO_WINDOW

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
# Past-due and high-priority requests named at the top of a digest, at most, of each kind.
DIGEST_NAMED = 10
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
    deliver_after: datetime | None = None,
) -> Notification:
    """Write an in-app notification and, when `email`, send it by email once this commits.

    One held until `deliver_after` is neither listed nor emailed before then:
    `email_due_notifications` sends it once it falls due.
    """
    notification = Notification.objects.create(
        recipient=recipient,
        kind=kind,
        subject=subject[:200],
        body=body,
        url=url[:500],
        request=request,
        alert=alert,
        deliver_after=deliver_after,
    )
    if email and recipient.email and deliver_after is None:
        enqueue_after_commit("send_notification_email", notification.pk)
    return notification


# Requesters: what became of their request.


def notify_request_decided(image_request_id: int) -> None:
    """Tell the requester how their request was decided, output by output.

    Once per decision: a request decided again after an undo is told again. Held until the
    decisions that settled it can no longer be undone.
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
        deliver_after=_undoable_until(image_request),
    )


def _undoable_until(image_request: ImageRequest) -> datetime | None:
    """When the last decision that could still undo the request's outcome stops being undoable.

    None when nothing can undo it any more: a change request (the revision has started), or
    approvals and rejections older than the undo window.
    """
    if image_request.status not in (R.APPROVED, R.REJECTED):
        return None
    latest = (
        Decision.objects.filter(
            output__request=image_request, reviewer__isnull=False, undone_at__isnull=True
        )
        .exclude(verdict=Decision.Verdict.CHANGES)
        .aggregate(latest=Max("created_at"))["latest"]
    )
    if latest is None or latest + UNDO_WINDOW <= timezone.now():
        return None
    return latest + UNDO_WINDOW


def withdraw_held_decision(image_request: ImageRequest) -> int:
    """Withdraw the requester's decision notification still held; return how many.

    Call in the transaction that undoes a decision, holding the request's row lock: nobody is
    told of an outcome that was taken back. A request that stands decided is told afresh.
    """
    withdrawn, _ = Notification.objects.filter(
        request=image_request,
        kind=REQUEST_DECIDED,
        deliver_after__gt=timezone.now(),
        emailed_at__isnull=True,
    ).delete()
    if withdrawn and image_request.status in DECIDED:
        enqueue_after_commit("notify_request_decided", image_request.pk)
    return withdrawn


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
    """Send each reviewer whose schedule is due a digest of what awaits them; return how many.

    What awaits a reviewer is what they decide: requests without stages, and those in a stage
    of one of their groups. Immediate: whenever such a request has come into review, or into
    their stage, since their last digest. Hourly and daily: once a period while anything
    awaits them. Never when nothing does.
    """
    now = now or timezone.now()
    in_review = ImageRequest.objects.filter(status=R.IN_REVIEW)
    if not in_review.exists():
        return 0
    sent = 0
    for reviewer in reviewers():
        awaiting = in_stages_of(in_review, reviewer)
        digest = _digest(awaiting, now)
        if digest is None:
            continue
        subject, body = digest
        preference_id = preferences_for(reviewer).pk
        with transaction.atomic():
            preference = lock(NotificationPreference, preference_id)
            if not _digest_due(preference, awaiting, now):
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


def _digest(awaiting: QuerySet[ImageRequest], now: datetime) -> tuple[str, str] | None:
    """The subject and body of a digest of `awaiting`, or None when it is empty."""
    figures = awaiting.aggregate(total=Count("id"), oldest=Min("created_at"))
    if not figures["total"]:
        return None
    overdue_before = now - timedelta(hours=settings.REVIEW_OVERDUE_HOURS)
    by_mode = dict(awaiting.values_list("mode").annotate(n=Count("id")).order_by())
    overdue = awaiting.filter(created_at__lt=overdue_before).count()
    subject, body = _digest_text(figures["total"], figures["oldest"], overdue, by_mode, now)
    past_due, pressing = _pressing_lines(awaiting, now)
    if past_due:
        subject += f", {past_due} past due"
    return subject, "\n".join([*pressing, body]) if pressing else body


def _pressing_lines(awaiting: QuerySet[ImageRequest], now: datetime) -> tuple[int, list[str]]:
    """How many requests are past their due date, and the digest's first lines naming them,
    then the urgent and high-priority ones, each most pressing first."""
    late = awaiting.filter(due_at__lt=now)
    past_due = late.count()
    lines = []
    if past_due:
        lines.append(f"Past due: {past_due}")
        for item in late.order_by("due_at", "id")[:DIGEST_NAMED]:
            lines.append(f"- {_digest_item(item, now)}")
        if past_due > DIGEST_NAMED:
            lines.append(f"- and {past_due - DIGEST_NAMED} more")
    high = awaiting.filter(priority__gte=ImageRequest.Priority.HIGH).exclude(due_at__lt=now)
    named = list(high.order_by("-priority", "created_at", "id")[: DIGEST_NAMED + 1])
    if named:
        lines.append("Urgent and high priority:")
        lines += [f"- {_digest_item(item, now)}" for item in named[:DIGEST_NAMED]]
        if len(named) > DIGEST_NAMED:
            lines.append("- and more: sort the queue by priority")
    return past_due, [*lines, ""] if lines else []


def _digest_item(image_request: ImageRequest, now: datetime) -> str:
    """A request named by its number and link; like the rest of the digest, without its
    prompt, which an email should not carry."""
    facts = [image_request.get_priority_display().lower() + " priority"]
    if state := due_state(image_request, now):
        facts.insert(0, state.words)
    url = absolute(reverse("review_detail", args=[image_request.pk]))
    return f"#{image_request.pk} ({', '.join(facts)}) {url}"


def _digest_due(
    preference: NotificationPreference, awaiting: QuerySet[ImageRequest], now: datetime
) -> bool:
    last = preference.last_digest_at
    if preference.review_digest == Digest.OFF:
        return False
    if preference.review_digest == Digest.IMMEDIATE:
        # Arrived: came into review, or moved on into a stage of the reviewer's.
        arrived = Event.objects.filter(
            Q(subject="request", to_state=R.IN_REVIEW) | Q(subject="stage"),
            request__in=awaiting,
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
    unsent = Notification.objects.filter(
        deliver_after__isnull=True,
        emailed_at__isnull=True,
        created_at__lt=now - EMAIL_LEASE,
        created_at__gte=now - EMAIL_GIVE_UP,
    )
    return _enqueue_wanted(unsent)


def email_due_notifications(now: datetime | None = None) -> int:
    """Enqueue the emails of held notifications that have fallen due; return how many.

    Each tick takes every one still unsent, so a lost job is sent again at the next.
    """
    now = now or timezone.now()
    due = Notification.objects.filter(
        deliver_after__lte=now, deliver_after__gte=now - EMAIL_GIVE_UP, emailed_at__isnull=True
    )
    return _enqueue_wanted(due)


def _enqueue_wanted(unsent: QuerySet) -> int:
    """Enqueue the email of each notification whose recipient wants it emailed."""
    addressed = list(unsent.exclude(recipient__email=""))
    preferences = {
        p.user_id: p
        for p in NotificationPreference.objects.filter(
            user_id__in={n.recipient_id for n in addressed}
        )
    }
    resent = 0
    for notification in addressed:
        wanted = EMAIL_PREFERENCE.get(notification.kind)
        preference = preferences.get(notification.recipient_id) or NotificationPreference()
        if wanted is None or getattr(preference, wanted):
            enqueue_after_commit("send_notification_email", notification.pk)
            resent += 1
    return resent


# The in-app list.


def mark_read(*, recipient: AbstractBaseUser, notification_id: int | None = None) -> int:
    """Mark one of the recipient's delivered notifications read, or all; return how many."""
    unread = delivered_to(recipient).filter(read_at__isnull=True)
    if notification_id is not None:
        unread = unread.filter(pk=notification_id)
    return unread.update(read_at=timezone.now())
