"""A reviewer watches the operations dashboard in a real browser, without acting on it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from imagereview.actions import close_circuit, open_circuit
from imagereview.models import Generation, ImageRequest
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_sees_stuck_work_and_halts_but_no_buttons(
    live_server, new_page, requester, reviewer, tmp_path
):
    stuck_request = ImageRequest.objects.create(requester=requester, prompt="A fox in snow")
    stuck = Generation.objects.create(
        request=stuck_request, state="submitted", provider_task_id="task_quiet"
    )
    Generation.objects.filter(pk=stuck.pk).update(submitted_at=timezone.now() - timedelta(hours=1))
    open_circuit(code=402, reason="the balance of 3 credits is below 18")
    close_circuit(note="credit check answered 900 credits")
    open_circuit(code=401, reason="the API key was refused")

    page = new_page(height=1000)
    log_in(page, live_server.url, "rita", "rita-password")
    page.get_by_role("link", name="Operations").click()

    expect(page.locator("svg.chart")).to_have_count(3)
    row = page.locator(f'#stuck-list tr[data-generation="{stuck.pk}"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)
    openings = page.locator("#circuit-openings tbody tr")
    expect(openings).to_have_count(2)
    expect(openings.nth(0)).to_contain_text("the cluster: credit check answered 900 credits")
    expect(openings.nth(1)).to_contain_text("still open")
    expect(page.get_by_role("button", name="Resume now")).to_have_count(0)
    page.locator("#circuit-openings").screenshot(path=tmp_path / "circuit.png")
