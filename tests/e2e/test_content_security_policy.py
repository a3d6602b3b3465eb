"""Every page of the app, as each kind of user sees it, under the Content-Security-Policy.

The `new_page` fixture fails a test on any violation the browser reports; these tests walk
every page so that none is left out, and check that the scripts still do their work.
"""

import pytest
from django.contrib import admin
from django.urls import reverse
from playwright.sync_api import expect

from imagereview.models import Asset, ImageRequest, WebhookEndpoint
from imagereview.roles import REQUESTERS, REVIEWERS
from tests.conftest import make_user
from tests.e2e.conftest import log_in
from tests.factories import publication_of, request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def visit(page, url: str, status: int = 200) -> None:
    """Open `url`, check it was sent the policy, and let its scripts run."""
    response = page.goto(url)
    assert response.status == status, f"{url} answered {response.status}"
    policy = response.header_value("content-security-policy") or ""
    assert "default-src 'self'" in policy, f"{url} was sent no policy"
    page.wait_for_load_state("networkidle")


def signed_in(new_page, live_server, username: str):
    page = new_page()
    log_in(page, live_server.url, username, f"{username}-password")
    return page


@pytest.fixture
def people(db):
    requester = make_user("alice", REQUESTERS)
    reviewer = make_user("rita", REVIEWERS)
    make_user("ada", superuser=True)
    edit = request_in_review(requester, prompt="a red door", mode=ImageRequest.Mode.EDIT)
    publication_of(edit.assets.filter(kind=Asset.Kind.OUTPUT).first())
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", description="receiver")
    return {"requester": requester, "reviewer": reviewer, "edit": edit}


def test_a_requester_sees_every_page_without_a_violation(live_server, new_page, people):
    page = signed_in(new_page, live_server, "alice")
    edit = people["edit"]
    for name, args in [
        ("home", ()),
        ("my_requests", ()),
        ("new_request", ()),
        ("new_edit", ()),
        ("import_batch", ()),
        ("request_detail", (edit.pk,)),
        ("library", ()),
        ("notifications", ()),
        ("notification_settings", ()),
        ("api_tokens", ()),
        ("new_api_token", ()),
    ]:
        visit(page, live_server.url + reverse(name, args=args))
    visit(page, live_server.url + reverse("review_queue"), status=403)
    visit(page, live_server.url + reverse("request_detail", args=[edit.pk + 1000]), status=404)

    page.get_by_role("link", name="New request").click()
    page.get_by_label("Prompt").fill("a quiet harbour")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_load_state("networkidle")
    assert ImageRequest.objects.filter(prompt="a quiet harbour").exists()


def test_the_api_docs_load_and_render_every_operation(live_server, new_page, people):
    page = signed_in(new_page, live_server, "alice")
    visit(page, f"{live_server.url}/api/v1/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    listing = page.locator(".swagger-ui .opblock-get").first
    listing.locator(".opblock-summary").click()
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()
    expect(listing.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        "200"
    )


def test_a_reviewer_compares_and_zooms_without_a_violation(live_server, new_page, people):
    page = signed_in(new_page, live_server, "rita")
    for name in ("review_queue", "operations", "alerts", "library"):
        visit(page, live_server.url + reverse(name))
    visit(page, live_server.url + reverse("review_detail", args=[people["edit"].pk]))

    page.keyboard.press("v")
    slider = page.locator(".compare-slider")
    expect(slider).to_be_visible()
    output = people["edit"].assets.filter(kind=Asset.Kind.OUTPUT).first()
    frame_ratio = slider.locator(".slider-frame").evaluate("frame => frame.style.aspectRatio")
    assert frame_ratio.replace(" ", "") == f"{output.width}/{output.height}"
    page.locator(".slider-input").fill("20")
    after = slider.locator(".after")
    expect(after).to_have_css("clip-path", "inset(0px 0px 0px 20%)")
    page.get_by_role("button", name="Zoom in").click()
    assert page.evaluate("window.reviewView.scale") == 1.25
    expect(page.locator(".zoom-level")).to_have_text("125%")


def test_an_admin_sees_every_page_and_the_admin_without_a_violation(live_server, new_page, people):
    page = signed_in(new_page, live_server, "ada")
    endpoint = WebhookEndpoint.objects.get()
    for name, args in [
        ("operations", ()),
        ("alerts", ()),
        ("webhook_endpoints", ()),
        ("new_webhook_endpoint", ()),
        ("webhook_endpoint", (endpoint.pk,)),
        ("admin:index", ()),
        ("admin:auth_user_add", ()),
        ("admin:imagereview_imagerequest_change", (people["edit"].pk,)),
    ]:
        visit(page, live_server.url + reverse(name, args=args))
    for model in admin.site._registry:
        meta = model._meta
        visit(
            page, live_server.url + reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        )


def test_a_violation_fails_the_test(live_server, new_page, csp_violations, people):
    page = new_page()
    visit(page, f"{live_server.url}/login/")
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.evaluate("document.body.appendChild(document.createElement('script')).textContent = '1'")
    page.wait_for_timeout(300)
    assert any("style-src-attr" in violation for violation in csp_violations)
    assert any("script-src-elem" in violation for violation in csp_violations)
    csp_violations.clear()
