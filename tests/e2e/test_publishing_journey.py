"""From a prompt to a published image and an export, in a real browser: the request, the
review, publication on approval and by hand, what the requester then sees, the library and
a ZIP export holding the image, its manifest and its index row."""

import csv
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagereview.models import Asset, ImageRequest, Publication
from tests.conftest import wait_for
from tests.e2e.conftest import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "var" / "screenshots")
)


def ask(page, url: str, prompt: str, variants: str) -> ImageRequest:
    page.goto(f"{url}/requests/new/")
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Variants").select_option(variants)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#standing")).to_have_text("Ready for review", timeout=30_000)
    return ImageRequest.objects.get(prompt=prompt)


def test_approved_outputs_are_published_seen_found_and_exported(
    live_server, start_cluster, new_page, requester, reviewer, settings, publish_root
):
    settings.PUBLISH_ON_APPROVAL = False
    start_cluster()
    url = live_server.url
    asker = new_page()
    log_in(asker, url, "alice", "alice-password")
    by_hand = ask(asker, url, "A red lighthouse on a cliff at dusk", "2")
    automatic = ask(asker, url, "A paper boat on a rain puddle", "1")
    # This request asked to be published as soon as an output is approved.
    ImageRequest.objects.filter(pk=automatic.pk).update(auto_publish=True)

    judge = new_page()
    log_in(judge, url, "rita", "rita-password")
    judge.goto(f"{url}/review/{by_hand.pk}/")
    outputs = judge.locator("article.output")
    second = outputs.nth(1)
    second.get_by_label("Reject reason").select_option("artefacts")
    second.get_by_label("Comment", exact=True).fill("The railing melts into the rocks.")
    second.get_by_role("button", name="Reject").click()
    expect(outputs.nth(1).locator(".verdict")).to_contain_text("Reject")
    outputs.first.get_by_role("button", name="Approve").click()
    # The request is decided, so the next item opens by itself.
    judge.wait_for_url(lambda page_url: not page_url.endswith(f"/review/{by_hand.pk}/"))
    judge.goto(f"{url}/review/{by_hand.pk}/")
    panel = judge.locator("article.output").first.locator(".publish-panel")
    panel.get_by_role("button", name="Publish").click()
    expect(panel.locator(".badge")).to_have_text("Published", timeout=30_000)
    expect(panel).to_contain_text("Content Credentials embedded")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    judge.screenshot(path=SCREENSHOTS / "review-published.png", full_page=True)

    judge.goto(f"{url}/review/{automatic.pk}/")
    judge.locator("article.output").first.get_by_role("button", name="Approve").click()
    wait_for(
        lambda: Publication.objects.filter(
            request=automatic, state=Publication.State.PUBLISHED
        ).exists(),
        timeout=30,
        message="the automatic publication",
    )

    asker.goto(f"{url}/requests/{by_hand.pk}/")
    expect(asker.locator("#standing")).to_have_text("Published")
    progress = asker.locator("#progress")
    expect(progress).to_contain_text("Artefacts or distortions")
    expect(progress).to_contain_text("The railing melts into the rocks.")
    with asker.expect_download() as download_info:
        asker.get_by_role("link", name="Download published file").click()
    publication = Publication.objects.get(request=by_hand)
    downloaded = Path(download_info.value.path()).read_bytes()
    assert hashlib.sha256(downloaded).hexdigest() == publication.sha256
    asker.screenshot(path=SCREENSHOTS / "request-outcomes.png", full_page=True)

    asker.goto(f"{url}/library/")
    search = asker.get_by_label("Search prompts")
    search.fill("lighthouse")
    search.press("Enter")
    items = asker.locator("li.library-item")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("Published")
    asker.goto(f"{url}/library/")
    asker.screenshot(path=SCREENSHOTS / "library.png", full_page=True)
    asker.locator(f"#select-{by_hand.pk}").check()
    with asker.expect_download() as export_info:
        asker.get_by_role("button", name="Export selected").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(export_info.value.path()).read_bytes()))
    names = archive.namelist()
    output = Asset.objects.get(pk=publication.output_id)
    (image,) = [name for name in names if name.startswith("images/")]
    assert hashlib.sha256(archive.read(image)).hexdigest() in (output.sha256, publication.sha256)
    (manifest_name,) = [name for name in names if name.startswith("manifests/")]
    document = json.loads(archive.read(manifest_name))
    assert document["output"]["sha256"] == output.sha256
    rows = list(csv.DictReader(io.StringIO(archive.read("index.csv").decode("utf-8-sig"))))
    assert [row["output_id"] for row in rows] == [str(output.pk)]
