"""Notification pages: each user's own list, marking read, and their preferences."""

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory
from django.urls import reverse

from imagereview.actions import notifications
from imagereview.models import Notification, NotificationPreference
from imagereview.roles import REQUESTERS, REVIEWERS, context
from tests.conftest import client_for, make_user

Digest = NotificationPreference.Digest


@pytest.fixture
def people(db) -> dict[str, User]:
    return {
        "alice": make_user("alice", REQUESTERS),
        "bob": make_user("bob", REQUESTERS),
        "rita": make_user("rita", REVIEWERS),
        "root": make_user("root", superuser=True),
    }


@pytest.fixture
def alice_told(people) -> Notification:
    notifications.notify(
        recipient=people["bob"],
        kind="request_decided",
        subject="Bob's request approved",
        body="",
        url="/requests/99/",
        email=False,
    )
    return notifications.notify(
        recipient=people["alice"],
        kind="request_decided",
        subject="Alice's request rejected",
        body="Variant 1: Rejected",
        url="/requests/42/",
        email=False,
    )


def test_list_shows_only_ones_own(people, alice_told: Notification) -> None:
    response = client_for(people["alice"]).get(reverse("notifications"))

    assert response.status_code == 200
    assert b"Alice&#x27;s request rejected" in response.content
    assert b"Bob" not in response.content
    assert b'class="badge unread" title="Unread">1<' in response.content


def test_list_needs_a_login(db) -> None:
    response = Client().get(reverse("notifications"))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_list_htmx_returns_the_fragment(people, alice_told: Notification) -> None:
    response = client_for(people["alice"]).get(reverse("notifications"), HTTP_HX_REQUEST="true")

    assert b'<div id="notification-list">' in response.content
    assert b"<html" not in response.content
    # The navigation's unread count comes along, out of band.
    assert b'id="nav-notifications" hx-swap-oob="true"' in response.content


def test_opening_marks_read_and_goes_to_its_page(people, alice_told: Notification) -> None:
    client = client_for(people["alice"])

    response = client.get(reverse("open_notification", args=[alice_told.pk]))

    assert response.status_code == 302 and response["Location"] == "/requests/42/"
    alice_told.refresh_from_db()
    assert alice_told.read_at is not None


def test_opening_anothers_notification_is_not_found(people, alice_told: Notification) -> None:
    response = client_for(people["bob"]).get(reverse("open_notification", args=[alice_told.pk]))

    assert response.status_code == 404
    alice_told.refresh_from_db()
    assert alice_told.read_at is None


def test_mark_all_read_marks_only_ones_own(people, alice_told: Notification) -> None:
    response = client_for(people["alice"]).post(reverse("mark_notifications_read"))

    assert response.status_code == 302
    assert Notification.objects.get(recipient=people["alice"]).read_at is not None
    assert Notification.objects.get(recipient=people["bob"]).read_at is None


def test_mark_all_read_htmx_returns_the_list(people, alice_told: Notification) -> None:
    response = client_for(people["alice"]).post(
        reverse("mark_notifications_read"), HTTP_HX_REQUEST="true"
    )

    assert response.status_code == 200
    assert response["HX-Trigger"] == "notificationsRead"
    assert b'<div id="notification-list">' in response.content
    assert b"unread" not in response.content


def test_mark_all_read_rejects_get(people) -> None:
    response = client_for(people["alice"]).get(reverse("mark_notifications_read"))

    assert response.status_code == 405


@pytest.mark.parametrize("name", ["mark_notifications_read", "notification_settings"])
def test_posts_need_the_csrf_token(people, name: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["alice"])

    response = client.post(reverse(name), {"email_decisions": ""})

    assert response.status_code == 403


def test_settings_show_only_what_applies(people) -> None:
    requester_page = client_for(people["alice"]).get(reverse("notification_settings"))
    admin_page = client_for(people["root"]).get(reverse("notification_settings"))

    assert b"review_digest" not in requester_page.content
    assert b"email_alerts" not in requester_page.content
    assert b"review_digest" in admin_page.content and b"email_alerts" in admin_page.content


def test_settings_save_the_users_preferences(people) -> None:
    response = client_for(people["rita"]).post(
        reverse("notification_settings"), {"review_digest": "hourly"}
    )

    assert response.status_code == 302
    preference = NotificationPreference.objects.get(user=people["rita"])
    assert preference.review_digest == Digest.HOURLY
    assert preference.email_decisions is False


def test_settings_htmx_returns_the_saved_form(people) -> None:
    response = client_for(people["rita"]).post(
        reverse("notification_settings"),
        {"review_digest": "off", "email_decisions": "on"},
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    assert response.content.lstrip().startswith(b'<form id="preferences"')
    assert b"Saved." in response.content
    assert NotificationPreference.objects.get(user=people["rita"]).review_digest == Digest.OFF


def test_settings_refuse_an_unknown_schedule(people) -> None:
    response = client_for(people["rita"]).post(
        reverse("notification_settings"), {"review_digest": "weekly"}
    )

    assert response.status_code == 400
    assert NotificationPreference.objects.get(user=people["rita"]).review_digest == Digest.DAILY


def test_unread_count_is_one_query(people, alice_told: Notification, django_assert_num_queries):
    request = RequestFactory().get("/")
    request.user = people["alice"]
    request.user.is_superuser = False
    with django_assert_num_queries(2):  # the reviewer check and the count
        assert context(request)["unread_notifications"] == 1
