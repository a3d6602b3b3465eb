"""The operations dashboard in a real browser: charts draw, stuck work is found and retried."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from imagereview.models import Decision, Generation, ImageRequest
from tests.conftest import make_user
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "operations.png"


def test_an_admin_finds_a_stuck_generation_and_retries_it(
    live_server, new_page, requester, reviewer
):
    make_user("ada", superuser=True)
    done = request_in_review(requester, prompt="Three lemons on a marble table", real_images=False)
    first, second = done.assets.filter(kind="output").order_by("generation__variant")
    Decision.objects.create(output=first, reviewer=reviewer, verdict="approve")
    Decision.objects.create(output=second, reviewer=reviewer, verdict="reject", reason="text")
    now = timezone.now()
    Generation.objects.filter(request=done).update(
        completed_at=now, submitted_at=now - timedelta(seconds=42)
    )
    failed = ImageRequest.objects.create(requester=requester, prompt="A red bicycle")
    Generation.objects.create(
        request=failed, state="failed", failure_code="422", credits=0, provider_task_id="t422"
    )
    stuck_request = ImageRequest.objects.create(requester=requester, prompt="A fox in snow")
    stuck = Generation.objects.create(
        request=stuck_request, state="submitted", provider_task_id="task_quiet"
    )
    Generation.objects.filter(pk=stuck.pk).update(submitted_at=now - timedelta(hours=1))

    page = new_page(height=1000)
    log_in(page, live_server.url, "ada", "ada-password")
    page.get_by_role("link", name="Operations").click()
    expect(page.locator("svg.chart")).to_have_count(3)
    expect(page.locator("svg.chart rect").first).to_be_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.get_by_role("link", name="1 submitted too long").click()
    row = page.locator(f'#stuck-list tr[data-generation="{stuck.pk}"]')
    expect(row).to_be_visible()
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_text(f"Generation {stuck.pk} is retried.")).to_be_visible()
    expect(page.locator(f'#stuck-list tr[data-generation="{stuck.pk}"]')).to_have_count(0)
    retry = Generation.objects.get(retry_of=stuck)
    assert retry.state == "queued"
    assert Generation.objects.get(pk=stuck.pk).failure_code == "cancelled"
