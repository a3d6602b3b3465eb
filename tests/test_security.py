"""Every state-changing form refuses a POST without a CSRF token."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

POSTS = [
    ("login", []),
    ("logout", []),
    ("new_request", []),
    ("new_edit", []),
    ("import_batch", []),
    ("bulk_decide", []),
    ("decide", [1]),
    ("request_changes", [1]),
    ("undo_decision", [1]),
    ("resume_submissions", []),
    ("admin:imagereview_generation_changelist", []),
]


@pytest.mark.parametrize(("name", "args"), POSTS, ids=[name for name, _ in POSTS])
def test_post_without_csrf_token_is_refused(db, name, args):
    admin = User.objects.create_superuser("boss", password="boss-password")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = client.post(reverse(name, args=args), {"verdict": "approve"})
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_the_provider_callback_is_the_one_exempt_endpoint_and_needs_its_token(db):
    client = Client(enforce_csrf_checks=True)
    url = reverse("provider_callback", args=[1, "token"])
    assert client.post(url, "{}", content_type="application/json").status_code == 404
