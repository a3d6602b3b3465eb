"""The alerts page in a real browser: an admin acknowledges an alert in place."""

import pytest
from playwright.sync_api import expect

from imagereview.actions.alerts import raise_alert
from imagereview.models import Alert
from tests.conftest import make_user
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_acknowledges_an_alert_in_place(live_server, new_page):
    make_user("ada", superuser=True)
    alert = raise_alert(
        kind="provider_latency",
        title="Provider latency: median 2 min against 40 s",
        detail="Median submitted-to-completed time of 12 tasks is 3.0x the baseline's.",
        value=120,
        baseline=40,
        threshold=80,
        link="/admin/imagereview/generation/?state__exact=submitted",
    )
    raise_alert(
        kind="circuit_open",
        subject="kie",
        title="Submissions halted at kie: code 402",
        detail="Insufficient credits.",
        severity="critical",
    )
    page = new_page()
    log_in(page, live_server.url, "ada", "ada-password")
    page.goto(f"{live_server.url}/operations/alerts/")
    card = page.locator(f"#alert-{alert.pk}")
    expect(card).to_contain_text("median 2 min")
    card.get_by_role("button", name="Acknowledge").click()
    expect(card.locator(".badge.acknowledged")).to_be_visible()
    expect(card.get_by_role("button", name="Acknowledge")).to_have_count(0)
    alert.refresh_from_db()
    assert alert.state == Alert.State.ACKNOWLEDGED
