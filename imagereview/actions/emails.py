"""Notification emails: a plain-text and an HTML part, linking back to the app.

Each is sent by a job once the notification is committed, and at most once however often
the job runs.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from imagereview.models import Notification
from imagereview.queries.notifications import delivered

log = logging.getLogger(__name__)


def absolute(url: str) -> str:
    """A link into this app as it is reached from outside (an email)."""
    return url if url.startswith(("http://", "https://")) else settings.PUBLIC_BASE_URL + url


def send_email(*, notification_id: int) -> bool:
    """Email a notification to its recipient, once; return whether this call sent it.

    The notification is claimed before sending, so two runs never both send; a send that
    fails gives the claim back for the job's next attempt. One still held is not sent.
    """
    now = timezone.now()
    claimed = Notification.objects.filter(
        delivered(now), pk=notification_id, emailed_at__isnull=True
    ).update(emailed_at=now)
    if not claimed:
        return False
    notification = Notification.objects.select_related("recipient").get(pk=notification_id)
    try:
        _message(notification).send()
    except Exception:
        Notification.objects.filter(pk=notification_id, emailed_at=now).update(emailed_at=None)
        raise
    log.info("emailed notification %s to user %s", notification.pk, notification.recipient_id)
    return True


def _message(notification: Notification) -> EmailMultiAlternatives:
    context = {
        "notification": notification,
        "recipient": notification.recipient,
        "link": absolute(notification.url) if notification.url else "",
        "settings_link": absolute(reverse("notification_settings")),
    }
    message = EmailMultiAlternatives(
        subject=notification.subject,
        body=render_to_string("notifications/email/message.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient.email],
    )
    message.attach_alternative(
        render_to_string("notifications/email/message.html", context), "text/html"
    )
    return message
