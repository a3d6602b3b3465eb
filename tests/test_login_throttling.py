"""Sign-in throttling: per account and per address, a clear page, an admin unlock, an audit."""

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.test import Client
from django.urls import reverse

from imagereview.actions.tokens import issue_token
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db
PASSWORD = "the-right-password"


@pytest.fixture
def ada():
    user = make_user("ada")
    user.set_password(PASSWORD)
    user.save()
    return user


def log_in(username: str, password: str, *, address: str = "203.0.113.7"):
    return Client(REMOTE_ADDR=address).post(
        reverse("login"), {"username": username, "password": password}
    )


def fail(times: int, username: str = "ada", *, address: str = "203.0.113.7") -> list[int]:
    return [log_in(username, "wrong", address=address).status_code for _ in range(times)]


def test_the_right_password_signs_in_after_fewer_failures_than_the_limit(ada, settings):
    assert set(fail(settings.AXES_FAILURE_LIMIT - 1)) == {200}
    assert log_in("ada", PASSWORD).status_code == 302


def test_an_account_is_locked_after_the_limit_even_with_the_right_password(ada, settings):
    assert fail(settings.AXES_FAILURE_LIMIT)[-1] == 429
    response = log_in("ada", PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page and "paused for 15 min" in page


def test_an_account_is_locked_for_guesses_from_many_addresses(ada, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail(1, address=f"198.51.100.{number}")
    assert log_in("ada", PASSWORD, address="192.0.2.1").status_code == 429


def test_an_address_is_locked_after_guessing_at_many_accounts(ada, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        fail(1, f"someone-{number}")
    assert log_in("ada", PASSWORD).status_code == 429
    assert log_in("ada", PASSWORD, address="192.0.2.1").status_code == 302


def test_failures_are_kept_for_the_audit(ada):
    fail(2)
    failures = AccessFailureLog.objects.filter(username="ada")
    assert failures.count() == 2
    assert set(failures.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_an_admin_unlocks_an_account_in_the_admin(ada, settings):
    fail(settings.AXES_FAILURE_LIMIT)
    admin = client_for(make_user("root", superuser=True))
    changelist = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert changelist.status_code == 200 and "ada" in changelist.content.decode()
    attempts = list(AccessAttempt.objects.filter(username="ada").values_list("pk", flat=True))
    admin.post(
        reverse("admin:axes_accessattempt_changelist"),
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert log_in("ada", PASSWORD).status_code == 302


def test_api_tokens_are_not_throttled_by_failed_logins(ada, settings):
    _, token = issue_token(user=ada, name="ci", scopes=["read"])
    fail(settings.AXES_FAILURE_LIMIT)
    api = Client(REMOTE_ADDR="203.0.113.7", headers={"Authorization": f"Bearer {token}"})
    assert api.get("/api/v1/requests").status_code == 200
