"""A requester's prompt becomes an image that a reviewer approves, in a real browser."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagereview.models import Decision, ImageRequest
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "var" / "screenshots")
)


def test_prompt_to_approved_image(live_server, start_cluster, new_page, requester, reviewer):
    start_cluster()
    url = live_server.url

    asker = new_page()
    log_in(asker, url, "alice", "alice-password")
    asker.get_by_role("navigation").get_by_role("link", name="New request").click()
    asker.get_by_label("Prompt").fill("A lighthouse on a cliff at dusk, warm windows")
    asker.get_by_label("Aspect ratio").select_option("16:9")
    asker.get_by_label("Variants").select_option("2")
    asker.get_by_role("button", name="Generate").click()
    expect(asker.locator("#standing")).to_have_text("Ready for review", timeout=30_000)
    expect(asker.locator("#progress img")).to_have_count(2)

    image_request = ImageRequest.objects.get()
    judge = new_page()
    log_in(judge, url, "rita", "rita-password")
    expect(judge).to_have_url(f"{url}/review/")
    judge.get_by_role("link", name=f"#{image_request.pk}").click()
    expect(judge.locator(".brief .prompt")).to_have_text(image_request.prompt)
    images = judge.locator("img.output-image")
    expect(images).to_have_count(2)
    for index in range(2):
        assert images.nth(index).evaluate("img => img.naturalWidth") == 1376

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    judge.screenshot(path=SCREENSHOTS / "review-page.png", full_page=True)

    judge.locator("article.output").first.get_by_role("button", name="Approve").click()
    # One approved output meets the request's quota: the next item (here the queue) opens.
    expect(judge).to_have_url(f"{url}/review/")
    judge.goto(f"{url}/review/{image_request.pk}/")
    expect(judge.locator(".brief .badge")).to_have_text("Approved")
    expect(judge.locator("article.output").first.locator(".history")).to_contain_text("by rita")

    approval = Decision.objects.get(verdict="approve")
    assert approval.reviewer == reviewer
    assert approval.created_at is not None
    assert ImageRequest.objects.get().status == ImageRequest.Status.APPROVED


def test_bad_prompt_shows_a_message_and_creates_nothing(live_server, new_page, requester):
    page = new_page()
    log_in(page, live_server.url, "alice", "alice-password")
    page.goto(f"{live_server.url}/requests/new/")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".field-error")).to_contain_text("Enter a prompt")
    prompt = page.get_by_label("Prompt")
    # No maxlength cuts a paste silently: the server's own check says what is wrong.
    assert prompt.get_attribute("maxlength") is None
    prompt.fill("x" * 10001)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".field-error")).to_contain_text("at most 10,000 characters")
    assert not ImageRequest.objects.exists()
