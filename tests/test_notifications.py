"""Notifications: in the app, and by email through a real SMTP server on this machine."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from imagereview import tasks
from imagereview.actions import emails, notifications
from imagereview.actions.review import decide, request_changes
from imagereview.actions.undo import undo_decision
from imagereview.models import (
    Alert,
    Asset,
    Decision,
    Event,
    Generation,
    ImageRequest,
    Notification,
    NotificationPreference,
)
from imagereview.roles import REQUESTERS, REVIEWERS
from imagereview.verdicts import UNDO_WINDOW
from tests.conftest import client_for, make_user
from tests.factories import request_in_review
from tests.smtp_server import SMTPServer

R = ImageRequest.Status
Digest = NotificationPreference.Digest
SEND = "imagereview.tasks.send_notification_email"
BASE = "https://review.example.test"


@pytest.fixture(autouse=True)
def public_base_url(settings) -> None:
    settings.PUBLIC_BASE_URL = BASE


@pytest.fixture
def told(django_capture_on_commit_callbacks, enqueued: list[tuple]):
    """Run a notifying call to its commit, then send the emails it enqueued, as workers would."""

    def told(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            result = call(*args, **kwargs)
        jobs = [job for job in enqueued if job[0] == SEND]
        enqueued[:] = [job for job in enqueued if job[0] != SEND]
        for _, notification_id in jobs:
            tasks.send_notification_email(notification_id)
        return result

    return told


def person(username: str, *groups: str, superuser: bool = False) -> User:
    user = make_user(username, *groups, superuser=superuser)
    user.email = f"{username}@example.test"
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def people(db) -> dict[str, User]:
    return {
        "alice": person("alice", REQUESTERS),
        "bob": person("bob", REQUESTERS),
        "rita": person("rita", REVIEWERS),
        "root": person("root", superuser=True),
    }


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("generation__variant"))


def enter_review(image_request: ImageRequest) -> ImageRequest:
    """Record the request's arrival in review, as the move that put it there does."""
    Event.objects.create(
        request=image_request, subject="request", from_state=R.GENERATING, to_state=R.IN_REVIEW
    )
    return image_request


def in_review(requester: User, **fields) -> ImageRequest:
    return enter_review(request_in_review(requester, real_images=False, **fields))


def settled(image_request: ImageRequest) -> None:
    """Age the request's decisions past the undo window: nothing can take its outcome back."""
    Decision.objects.filter(output__request=image_request).update(
        created_at=F("created_at") - UNDO_WINDOW
    )


# Requesters.


def test_decision_reaches_its_requester_only(people, smtp_server: SMTPServer, told) -> None:
    alice, rita = people["alice"], people["rita"]
    in_review(people["bob"], prompt="bob's secret campaign")
    image_request = in_review(alice, prompt="a lighthouse at dusk", variants=2)
    first, second = outputs_of(image_request)
    decide(
        output=first,
        reviewer=rita,
        verdict=Decision.Verdict.REJECT,
        reason=Decision.Reason.ARTEFACTS,
        comment="The railing melts into the sea.",
    )
    decide(output=second, reviewer=rita, verdict=Decision.Verdict.APPROVE, comment="Lovely.")
    settled(image_request)

    told(notifications.notify_request_decided, image_request.pk)

    assert [m.recipients for m in smtp_server.received] == [("alice@example.test",)]
    message = smtp_server.received[0]
    assert "approved" in message.subject.lower()
    text = message.part("text/plain")
    assert "Rejected" in text and "Approved" in text
    assert "Artefacts or distortions" in text
    assert "The railing melts into the sea." in text
    assert "Lovely." in text
    assert f"{BASE}/requests/{image_request.pk}/#output-{first.pk}" in text
    assert "bob" not in text and "secret campaign" not in text
    assert Notification.objects.filter(recipient=alice).count() == 1
    assert Notification.objects.exclude(recipient=alice).count() == 0


def test_decision_email_has_plain_and_html_parts(people, smtp_server: SMTPServer, told) -> None:
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    decide(output=output, reviewer=people["rita"], verdict=Decision.Verdict.APPROVE)
    settled(image_request)

    told(notifications.notify_request_decided, image_request.pk)

    [message] = smtp_server.received
    html = message.part("text/html")
    assert "<a href" in html and f"{BASE}/requests/{image_request.pk}/" in html
    assert f"{BASE}/notifications/settings/" in message.part("text/plain")
    assert str(message.message["From"]).endswith("@localhost>")


def test_decision_is_told_once(people, smtp_server: SMTPServer, told) -> None:
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    decide(output=output, reviewer=people["rita"], verdict=Decision.Verdict.APPROVE)
    settled(image_request)

    told(notifications.notify_request_decided, image_request.pk)
    told(notifications.notify_request_decided, image_request.pk)

    assert len(smtp_server.received) == 1
    assert Notification.objects.count() == 1


def test_decision_email_is_sent_once_when_its_job_runs_twice(
    people, smtp_server: SMTPServer, told
) -> None:
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    decide(output=output, reviewer=people["rita"], verdict=Decision.Verdict.APPROVE)
    settled(image_request)
    told(notifications.notify_request_decided, image_request.pk)
    notification = Notification.objects.get()

    assert emails.send_email(notification_id=notification.pk) is False
    assert len(smtp_server.received) == 1
    notification.refresh_from_db()
    assert notification.emailed_at is not None


def test_undecided_request_tells_nobody(people, smtp_server: SMTPServer, told) -> None:
    image_request = in_review(people["alice"])

    told(notifications.notify_request_decided, image_request.pk)

    assert smtp_server.received == [] and not Notification.objects.exists()


def test_preference_turns_decision_email_off(
    people, smtp_server: SMTPServer, told, enqueued
) -> None:
    preference = notifications.preferences_for(people["alice"])
    preference.email_decisions = False
    preference.save()
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    decide(output=output, reviewer=people["rita"], verdict=Decision.Verdict.APPROVE)
    settled(image_request)

    told(notifications.notify_request_decided, image_request.pk)

    assert smtp_server.received == []
    assert Notification.objects.get().recipient == people["alice"]


def test_changes_requested_tells_of_the_revision(people, smtp_server: SMTPServer, told) -> None:
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    revision = request_changes(
        output=output,
        reviewer=people["rita"],
        prompt="a lighthouse at dawn",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        comment="Make it morning.",
    )

    told(notifications.notify_request_decided, image_request.pk)

    (decided,) = smtp_server.received
    assert "changes requested" in decided.subject.lower()
    assert "Make it morning." in decided.part("text/plain")
    assert f"Revision #{revision.pk}" in decided.part("text/plain")
    assert {m.recipients for m in smtp_server.received} == {("alice@example.test",)}


def test_failed_request_tells_its_requester(people, smtp_server: SMTPServer, told) -> None:
    image_request = ImageRequest.objects.create(
        requester=people["alice"], prompt="a kite", status=R.FAILED
    )
    Generation.objects.create(
        request=image_request,
        state=Generation.State.FAILED,
        failure_message="The prompt was refused by the provider's content policy.",
    )

    told(notifications.notify_request_failed, image_request.pk)
    told(notifications.notify_request_failed, image_request.pk)

    [message] = smtp_server.received
    assert message.recipients == ("alice@example.test",)
    assert message.subject.startswith(f"Request #{image_request.pk} failed")
    assert "content policy" in message.part("text/plain")


# Reviewers.


@pytest.fixture
def schedules(people) -> dict[str, User]:
    """A reviewer on each schedule, besides the requesters and the admin (who reviews too)."""
    reviewers = {}
    for name, schedule in [
        ("ivy", Digest.IMMEDIATE),
        ("hal", Digest.HOURLY),
        ("dan", Digest.DAILY),
        ("otto", Digest.OFF),
    ]:
        reviewers[name] = person(name, REVIEWERS)
        NotificationPreference.objects.create(user=reviewers[name], review_digest=schedule)
    for name in ("rita", "root"):
        NotificationPreference.objects.create(user=people[name], review_digest=Digest.OFF)
    return reviewers


def digest_recipients(smtp_server: SMTPServer) -> set[str]:
    recipients = {address for m in smtp_server.received for address in m.recipients}
    smtp_server.clear()
    return {address.split("@")[0] for address in recipients}


def test_digest_follows_each_reviewers_schedule(
    people, schedules, smtp_server: SMTPServer, told
) -> None:
    assert told(notifications.send_review_digests) == 0
    in_review(people["alice"])
    start = timezone.now()

    assert told(notifications.send_review_digests, start) == 3
    assert digest_recipients(smtp_server) == {"ivy", "hal", "dan"}
    # Within every period, and nothing new: nobody.
    assert told(notifications.send_review_digests, start + timedelta(minutes=10)) == 0
    in_review(people["bob"], mode=ImageRequest.Mode.EDIT)
    # Something new: the immediate reviewer only.
    told(notifications.send_review_digests, start + timedelta(minutes=30))
    assert digest_recipients(smtp_server) == {"ivy"}
    told(notifications.send_review_digests, start + timedelta(minutes=61))
    assert digest_recipients(smtp_server) == {"hal"}
    told(notifications.send_review_digests, start + timedelta(hours=25))
    assert digest_recipients(smtp_server) == {"hal", "dan"}
    assert not Notification.objects.filter(
        recipient__in=[people["alice"], people["bob"], schedules["otto"]]
    ).exists()


def test_digest_counts_by_mode_with_overdue_first(
    people, schedules, smtp_server: SMTPServer, told, settings
) -> None:
    settings.REVIEW_OVERDUE_HOURS = 24
    old = in_review(people["alice"], prompt="alice's private brief")
    ImageRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    in_review(people["bob"], mode=ImageRequest.Mode.EDIT)

    told(notifications.send_review_digests)

    message = smtp_server.to("ivy@example.test")[0]
    text = message.part("text/plain")
    assert message.subject == "2 requests await review, 1 overdue"
    assert text.index("Overdue: 1") < text.index("Awaiting review: 2")
    assert "- Edit: 1" in text and "- Generate: 1" in text
    assert "Oldest waiting: 2\xa0days" in text
    assert f"{BASE}/review/?sort=oldest" in text
    assert "private brief" not in text and "alice" not in text
    assert "<a href" in message.part("text/html")


def test_no_digest_when_nothing_awaits(people, schedules, smtp_server: SMTPServer, told) -> None:
    decided = in_review(people["alice"])
    ImageRequest.objects.filter(pk=decided.pk).update(status=R.APPROVED)

    assert told(notifications.send_review_digests) == 0
    assert smtp_server.received == [] and not Notification.objects.exists()


def test_digest_never_reaches_a_requester_without_preferences(
    people, smtp_server: SMTPServer, told
) -> None:
    in_review(people["alice"])

    told(notifications.send_review_digests)

    # Reviewers without a choice get the daily default; requesters get nothing.
    assert digest_recipients(smtp_server) == {"rita", "root"}


# Admins.


def test_alert_reaches_staff_only(people, smtp_server: SMTPServer, told) -> None:
    quiet = person("quiet", superuser=True)
    preference = notifications.preferences_for(quiet)
    preference.email_alerts = False
    preference.save()
    alert = Alert.objects.create(
        kind="provider_latency",
        subject="kie",
        title="Provider latency drifted",
        detail="Median submitted-to-completed time doubled.",
        value=84.0,
        baseline=40.0,
        threshold=80.0,
        link="/operations/",
    )

    told(notifications.notify_alert, alert, opened=True)
    told(notifications.notify_alert, alert, opened=True)

    [message] = smtp_server.received
    assert message.recipients == ("root@example.test",)
    assert message.subject == "[Warning] Alert opened: Provider latency drifted"
    text = message.part("text/plain")
    assert "Value 84, baseline 40, threshold 80." in text
    assert f"{BASE}/operations/" in text
    assert set(Notification.objects.values_list("recipient__username", flat=True)) == {
        "root",
        "quiet",
    }

    alert.state, alert.resolved_at = Alert.State.RESOLVED, timezone.now()
    alert.save()
    smtp_server.clear()
    told(notifications.notify_alert, alert, opened=False)
    assert [m.subject for m in smtp_server.received] == [
        "[Warning] Alert resolved: Provider latency drifted"
    ]


def test_lost_email_jobs_are_sent_again_once(people, smtp_server: SMTPServer, told, enqueued):
    quiet = notifications.preferences_for(people["bob"])
    quiet.email_decisions = False
    quiet.save()
    for user in (people["alice"], people["bob"]):
        notifications.notify(
            recipient=user, kind="request_failed", subject="Failed", body="", url="/", email=True
        )
    enqueued.clear()  # the broker forgot them
    later = timezone.now() + timedelta(minutes=11)

    assert told(notifications.resend_lost_emails) == 0  # not yet past the lease
    assert told(notifications.resend_lost_emails, later) == 1
    assert told(notifications.resend_lost_emails, later) == 0

    assert [m.recipients for m in smtp_server.received] == [("alice@example.test",)]


# Decisions that may still be undone: held until they cannot be.


def let_undo_window_pass() -> None:
    """Move every held notification's moment into the past, as the clock would."""
    Notification.objects.filter(deliver_after__isnull=False).update(
        deliver_after=timezone.now() - timedelta(seconds=1)
    )


def listed_to(user: User) -> str:
    return client_for(user).get(reverse("notifications")).content.decode()


@pytest.fixture
def approved(people, told) -> tuple[ImageRequest, Decision]:
    """Alice's request, approved by Rita a moment ago, and the job that tells of it run."""
    image_request = in_review(people["alice"], prompt="a lighthouse at dusk", variants=1)
    [output] = outputs_of(image_request)
    decision = decide(output=output, reviewer=people["rita"], verdict=Decision.Verdict.APPROVE)
    told(notifications.notify_request_decided, image_request.pk)
    return image_request, decision


def test_decision_is_held_while_it_may_be_undone(
    people, approved, smtp_server: SMTPServer, told
) -> None:
    image_request, decision = approved
    held = Notification.objects.get()

    assert held.deliver_after == decision.created_at + UNDO_WINDOW
    assert smtp_server.received == []
    assert told(notifications.email_due_notifications) == 0
    assert emails.send_email(notification_id=held.pk) is False
    page = listed_to(people["alice"])
    assert "a lighthouse at dusk" not in page
    assert 'class="badge unread"' not in page
    assert client_for(people["alice"]).get(f"/notifications/{held.pk}/").status_code == 404
    assert notifications.mark_read(recipient=people["alice"]) == 0
    assert smtp_server.received == []


def test_decision_is_listed_and_emailed_once_the_window_passed(
    people, approved, smtp_server: SMTPServer, told
) -> None:
    image_request, _ = approved
    let_undo_window_pass()

    page = listed_to(people["alice"])
    assert "a lighthouse at dusk" in page
    assert 'class="badge unread" title="Unread">1<' in page
    assert told(notifications.email_due_notifications) == 1
    assert told(notifications.email_due_notifications) == 0  # sent: not again

    [message] = smtp_server.received
    assert message.recipients == ("alice@example.test",)
    assert message.subject.startswith(f"Request #{image_request.pk} approved")


def test_schedule_emails_what_fell_due(people, approved, smtp_server: SMTPServer, told) -> None:
    let_undo_window_pass()

    told(tasks.send_review_digests)

    assert [m.recipients for m in smtp_server.to("alice@example.test")] == [("alice@example.test",)]


def test_due_moment_is_the_end_of_the_undo_window(
    people, approved, smtp_server: SMTPServer, told
) -> None:
    _, decision = approved
    just_before = decision.created_at + UNDO_WINDOW - timedelta(seconds=1)

    assert told(notifications.email_due_notifications, just_before) == 0
    assert told(notifications.email_due_notifications, just_before + timedelta(seconds=2)) == 1


def test_undone_decision_is_never_told(people, approved, smtp_server: SMTPServer, told) -> None:
    image_request, decision = approved

    told(undo_decision, decision_id=decision.pk, reviewer=people["rita"])

    assert not Notification.objects.exists()
    later = timezone.now() + 2 * UNDO_WINDOW
    assert told(notifications.email_due_notifications, later) == 0
    told(notifications.notify_request_decided, image_request.pk)  # a late job tells nothing
    assert not Notification.objects.exists()
    assert smtp_server.received == []
    assert "a lighthouse at dusk" not in listed_to(people["alice"])


def test_undo_from_the_review_page_withdraws_the_told_decision(
    people, approved, smtp_server: SMTPServer
) -> None:
    _, decision = approved

    client_for(people["rita"]).post(reverse("undo_decision", args=[decision.pk]))

    assert not Notification.objects.exists()


def test_decided_again_after_undo_tells_the_new_outcome_once(
    people, approved, smtp_server: SMTPServer, told
) -> None:
    image_request, decision = approved
    told(undo_decision, decision_id=decision.pk, reviewer=people["rita"])
    [output] = outputs_of(image_request)
    decide(
        output=output,
        reviewer=people["rita"],
        verdict=Decision.Verdict.REJECT,
        reason=Decision.Reason.ARTEFACTS,
    )

    told(notifications.notify_request_decided, image_request.pk)
    let_undo_window_pass()
    told(notifications.email_due_notifications)
    told(notifications.notify_request_decided, image_request.pk)

    [notification] = Notification.objects.all()
    assert notification.subject.startswith(f"Request #{image_request.pk} rejected")
    [message] = smtp_server.received
    assert message.subject == notification.subject


def test_change_request_is_told_at_once(people, smtp_server: SMTPServer, told) -> None:
    image_request = in_review(people["alice"], variants=1)
    [output] = outputs_of(image_request)
    request_changes(
        output=output,
        reviewer=people["rita"],
        prompt="a lighthouse at dawn",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        comment="Make it morning.",
    )

    told(notifications.notify_request_decided, image_request.pk)

    assert Notification.objects.get().deliver_after is None
    assert len(smtp_server.received) == 1


def test_other_kinds_stay_immediate(people, smtp_server: SMTPServer, told) -> None:
    image_request = ImageRequest.objects.create(
        requester=people["alice"], prompt="a kite", status=R.FAILED
    )

    told(notifications.notify_request_failed, image_request.pk)

    assert Notification.objects.get().deliver_after is None
    assert len(smtp_server.received) == 1
