"""Notification emails sent by a real cluster to a real SMTP server."""

from datetime import timedelta

import pytest
from django.utils import timezone

from imagereview.actions import notifications
from imagereview.models import Decision, Notification
from imagereview.verdicts import UNDO_WINDOW
from tests.conftest import wait_for
from tests.factories import request_in_review
from tests.smtp_server import SMTPServer

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def test_cluster_emails_a_decision_once(
    start_cluster, smtp_server: SMTPServer, requester, reviewer
) -> None:
    requester.email = "alice@example.test"
    requester.save(update_fields=["email"])
    image_request = request_in_review(requester, variants=1, real_images=False)
    output = image_request.assets.get(kind="output")
    decision = Decision.objects.create(
        output=output, reviewer=reviewer, verdict=Decision.Verdict.APPROVE
    )
    # Past the time it could be undone: told at once.
    Decision.objects.filter(pk=decision.pk).update(
        created_at=timezone.now() - UNDO_WINDOW - timedelta(seconds=1)
    )
    image_request.status = image_request.Status.APPROVED
    image_request.save(update_fields=["status"])
    cluster = start_cluster(
        EMAIL_HOST=smtp_server.host, EMAIL_PORT=str(smtp_server.port), EMAIL_USE_TLS="false"
    )

    notifications.notify_request_decided(image_request.pk)

    wait_for(
        lambda: smtp_server.received,
        timeout=60,
        message=f"the email; cluster log:\n{cluster.log()}",
    )
    wait_for(lambda: Notification.objects.filter(emailed_at__isnull=False).exists(), timeout=10)
    [message] = smtp_server.received
    assert message.recipients == ("alice@example.test",)
    assert "approved" in message.subject.lower()
    assert message.part("text/plain") and message.part("text/html")
