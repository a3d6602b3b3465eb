"""Due dates and priority on the review queue, in a real browser."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from imagereview.models import ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

P = ImageRequest.Priority


def test_reviewer_sorts_the_queue_by_due_date_and_sees_what_is_overdue(
    live_server, new_page, requester, reviewer
):
    now = timezone.now()
    made = [
        ("Autumn catalogue cover, no due date", {}),
        ("Spring banner, due in three days", {"due_at": now + timedelta(days=3, minutes=5)}),
        (
            "Launch hero image, overdue",
            {"due_at": now - timedelta(hours=2, minutes=5), "priority": P.HIGH},
        ),
        (
            "Press kit portrait, due soon",
            {"due_at": now + timedelta(hours=3, minutes=5), "priority": P.URGENT},
        ),
    ]
    requests = [
        request_in_review(requester, prompt=prompt, variants=2, **fields) for prompt, fields in made
    ]
    no_due, spring, overdue, soon = requests
    page = new_page(width=1280, height=800)
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/")
    rows = page.locator(".queue-item")
    expect(rows).to_have_count(4)
    expect(rows.first).to_have_attribute("data-request", str(no_due.pk))  # oldest first

    page.locator("select[name=sort]").select_option("due")
    page.wait_for_url("**sort=due**")
    order = [str(r.pk) for r in (overdue, soon, spring, no_due)]
    expect(rows.nth(0)).to_have_attribute("data-request", order[0])
    assert [rows.nth(n).get_attribute("data-request") for n in range(4)] == order

    late = rows.nth(0)
    expect(late).to_have_class("queue-item overdue")
    expect(late.locator(".due.overdue")).to_have_text("⚠ Overdue by 2 h")
    expect(late.locator(".priority-badge")).to_have_text("High priority")
    # Not by colour alone: the words say it, and the row's edge is marked too.
    border = late.locator(".queue-link").evaluate("(el) => getComputedStyle(el).borderLeftWidth")
    assert border == "4px"
    expect(rows.nth(1).locator(".due")).to_have_text("Due in 3 h")
    expect(rows.nth(1).locator(".priority-badge")).to_have_text("Urgent priority")
    expect(rows.nth(3).locator(".due")).to_have_count(0)

    if os.environ.get("SCREENSHOT_DIR"):
        directory = Path(os.environ["SCREENSHOT_DIR"])
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / "queue-due.png"))

    page.get_by_label("Overdue").check()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-request", str(overdue.pk))
    page.get_by_label("Overdue").uncheck()
    expect(rows).to_have_count(4)

    # The next item follows the chosen order: from the overdue one to the one due soon.
    rows.first.locator(".queue-link").click()
    page.wait_for_url(f"**/review/{overdue.pk}/**")
    expect(page.locator("#due")).to_contain_text("overdue by 2 h")
    page.keyboard.press("n")
    page.wait_for_url(f"**/review/{soon.pk}/?sort=due")
    expect(page.locator("#due")).to_contain_text("due in 3 h")
