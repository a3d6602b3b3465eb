"""Personal API tokens: issuing, verifying, revoking; their pages and their admin."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from imagereview.actions.tokens import TokenRefused, issue_token, revoke_token, verify_token
from imagereview.models import ApiToken, IdempotencyRecord
from imagereview.roles import REQUESTERS
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


def test_a_token_is_shown_once_and_kept_as_a_hash(requester):
    token, text = issue_token(user=requester, name="ci", scopes=["request", "read"])
    mark, prefix, secret = text.split("_", 2)
    assert (mark, prefix) == ("ir", token.prefix)
    assert len(secret) >= 40
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get())
    assert token.scopes == ["read", "request"]


def test_an_unknown_scope_is_refused(requester):
    with pytest.raises(ValueError, match="everything"):
        issue_token(user=requester, name="x", scopes=["read", "everything"])


def test_verify_finds_the_token_and_notes_its_use(requester):
    token, text = issue_token(user=requester, name="ci", scopes=["read"])
    assert verify_token(text) == token
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize("mangle", [lambda t: t[:-1] + "x", lambda t: "ir_000000000000_x"])
def test_verify_refuses_a_wrong_secret_or_prefix(requester, mangle):
    _, text = issue_token(user=requester, name="ci", scopes=["read"])
    with pytest.raises(TokenRefused, match="not valid"):
        verify_token(mangle(text))


def test_verify_refuses_what_is_not_a_token(db):
    with pytest.raises(TokenRefused, match="start with ir_"):
        verify_token("Basic abc")


def test_verify_refuses_a_revoked_token_and_the_token_of_a_disabled_user(requester):
    token, text = issue_token(user=requester, name="ci", scopes=["read"])
    requester.is_active = False
    requester.save()
    with pytest.raises(TokenRefused, match="disabled"):
        verify_token(text)
    revoke_token(token_id=token.pk)
    with pytest.raises(TokenRefused, match="revoked"):
        verify_token(text)


def test_last_use_is_written_at_most_once_a_minute(requester):
    token, text = issue_token(user=requester, name="ci", scopes=["read"])
    recently = timezone.now() - timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recently)
    verify_token(text)
    token.refresh_from_db()
    assert token.last_used_at == recently
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recently - timedelta(minutes=1))
    verify_token(text)
    token.refresh_from_db()
    assert token.last_used_at > recently


def test_revoking_twice_keeps_the_first_time(requester):
    token, _ = issue_token(user=requester, name="ci", scopes=["read"])
    first = revoke_token(token_id=token.pk).revoked_at
    assert revoke_token(token_id=token.pk).revoked_at == first


# --- the pages


def test_the_token_page_lists_only_ones_own_tokens(requester):
    issue_token(user=requester, name="nightly batch", scopes=["read"])
    issue_token(user=make_user("bob", REQUESTERS), name="bobs script", scopes=["read"])
    page = client_for(requester).get("/account/tokens/").content.decode()
    assert "nightly batch" in page
    assert "bobs script" not in page


def test_the_navigation_links_the_token_page(requester):
    page = client_for(requester).get("/requests/").content.decode()
    assert 'href="/account/tokens/"' in page


def test_creating_a_token_shows_its_text_once(requester):
    client = client_for(requester)
    response = client.post("/account/tokens/new/", {"name": "cms", "scopes": ["read", "request"]})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    text = re.search(r"ir_[0-9a-f]+_[\w-]+", response.content.decode()).group()
    token = ApiToken.objects.get()
    assert verify_token(text) == token
    assert token.scopes == ["read", "request"]
    listing = client.get("/account/tokens/").content.decode()
    assert text not in listing
    assert f"ir_{token.prefix}_" in listing


def test_a_token_needs_a_name_and_a_scope(requester):
    response = client_for(requester).post("/account/tokens/new/", {"name": ""})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Name the token" in page
    assert "Choose at least one" in page
    assert not ApiToken.objects.exists()


def test_revoking_ones_own_token(requester):
    token, text = issue_token(user=requester, name="ci", scopes=["read"])
    response = client_for(requester).post(f"/account/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Client(HTTP_AUTHORIZATION=f"Bearer {text}").get("/api/v1/me").status_code == 401


def test_another_users_token_cannot_be_revoked(requester):
    token, _ = issue_token(user=make_user("bob", REQUESTERS), name="bob", scopes=["read"])
    response = client_for(requester).post(f"/account/tokens/{token.pk}/revoke/")
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_token_pages_need_a_signed_in_user(db):
    assert Client().get("/account/tokens/").status_code == 302
    assert Client().post("/account/tokens/new/", {"name": "x"}).status_code == 302


# --- the admin


@pytest.fixture
def admin_client(db):
    return client_for(make_user("root", superuser=True))


def test_the_admin_revokes_tokens(admin_client, requester):
    token, _ = issue_token(user=requester, name="leaked", scopes=["read"])
    response = admin_client.post(
        "/admin/imagereview/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_admin_shows_tokens_without_letting_their_secrets_change(admin_client, requester):
    token, _ = issue_token(user=requester, name="ci", scopes=["read"])
    page = admin_client.get(f"/admin/imagereview/apitoken/{token.pk}/change/")
    assert page.status_code == 200
    assert 'name="secret_hash"' not in page.content.decode()
    assert admin_client.get("/admin/imagereview/apitoken/add/").status_code == 403


def test_idempotency_records_are_read_only_in_the_admin(admin_client, requester):
    record = IdempotencyRecord.objects.create(
        user=requester, key="k", endpoint="POST /api/v1/requests", fingerprint="f"
    )
    assert admin_client.get("/admin/imagereview/idempotencyrecord/").status_code == 200
    assert admin_client.get("/admin/imagereview/idempotencyrecord/add/").status_code == 403
    change = admin_client.post(
        f"/admin/imagereview/idempotencyrecord/{record.pk}/change/", {"key": "other"}
    )
    assert change.status_code == 403
