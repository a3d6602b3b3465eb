"""API tokens in a real browser: made with scopes, shown once, used, revoked."""

import os
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from imagereview.actions.tokens import issue_token
from imagereview.models import ApiToken
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "var" / "screenshots")
)


def me(base_url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_a_requester_makes_a_token_uses_it_and_revokes_it(live_server, new_page, requester):
    issue_token(user=requester, name="CMS image sync", scopes=["read"])
    page = new_page()
    log_in(page, live_server.url, "alice", "alice-password")
    page.get_by_role("link", name="API tokens").click()
    page.get_by_role("link", name="New token").click()
    page.get_by_label("Name").fill("nightly batch")
    page.get_by_label("Create requests").check()
    page.get_by_role("button", name="Create token").click()

    expect(page.get_by_role("heading")).to_have_text("Token “nightly batch” created")
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()
    secret = page.locator("#token-text").inner_text()
    assert secret.startswith("ir_")
    token = ApiToken.objects.get(name="nightly batch")
    assert token.scopes == ["read", "request"]
    assert secret.split("_", 2)[2] not in token.secret_hash

    page.get_by_role("link", name="Back to your tokens").click()
    row = page.locator(f"#token-{token.pk}")
    expect(row).to_contain_text(f"ir_{token.prefix}_…")
    expect(row).to_contain_text("read, request")
    expect(row).to_contain_text("never")
    assert secret not in page.content()
    page.goto(f"{live_server.url}/account/tokens/new/")
    assert secret not in page.content()

    answer = me(live_server.url, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["username"] == "alice"
    assert answer.json()["scopes"] == ["read", "request"]

    page.goto(f"{live_server.url}/account/tokens/")
    assert secret not in page.content()
    expect(row).not_to_contain_text("never")  # last used, to the minute
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".messages")).to_contain_text(
        "The token “nightly batch” is revoked: it no longer works."
    )
    expect(row).to_have_class("revoked")
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "api-tokens.png", full_page=True)

    refused = me(live_server.url, secret)
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/not-authenticated")
    assert problem["status"] == 401
    assert problem["detail"] == "This API token was revoked."
