"""The library in a real browser: filters swap the results, ticked requests export as a ZIP."""

import csv
import io
import os
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagereview import actions
from imagereview.models import ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "var" / "screenshots")
)


def approved(requester, reviewer, prompt: str) -> ImageRequest:
    item = request_in_review(requester, prompt=prompt, approval_quota=1)
    first, second = item.assets.filter(kind="output").order_by("generation__variant")
    actions.decide(output=second, reviewer=reviewer, verdict="reject", reason="artefacts")
    actions.decide(output=first, reviewer=reviewer, verdict="approve")
    return item


def test_a_reviewer_filters_the_library_and_exports_the_ticked_requests(
    live_server, new_page, requester, reviewer, tmp_path
):
    lemons = approved(requester, reviewer, "Three lemons on a marble table, soft window light")
    approved(requester, reviewer, "A red bicycle against a blue wall")
    request_in_review(requester, prompt="A fox in fresh snow, early morning")
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.get_by_role("link", name="Library").click()
    expect(page.locator(".library-item")).to_have_count(3)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "library.png", full_page=True)

    page.get_by_label("Search prompts").fill("lemons")
    expect(page.locator(".library-item")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/library/\?q=lemons"))
    page.get_by_label("State").select_option("approved")
    expect(page).to_have_url(re.compile(r"state=approved"))
    expect(page.locator(".library-item")).to_have_count(1)
    item = page.locator(f'.library-item[data-request="{lemons.pk}"]')
    expect(item.locator("figcaption .badge")).to_have_text(["Approved", "Rejected"])

    item.get_by_label(f"Select #{lemons.pk}").check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export selected").click()
    assert download.value.suggested_filename.startswith("imagereview-export-")
    saved = tmp_path / "export.zip"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode())))
        assert [int(row["request_id"]) for row in rows] == [lemons.pk]
        assert rows[0]["file"] in archive.namelist()


def test_an_export_with_nothing_selected_says_so(live_server, new_page, requester, reviewer):
    approved(requester, reviewer, "A tram crossing a bridge")
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/library/")
    page.get_by_role("button", name="Export selected").click()
    expect(page.locator(".messages")).to_contain_text(
        "Nothing to export: select requests with approved outputs, or change the filters."
    )
    expect(page.locator(".library-item")).to_have_count(1)
