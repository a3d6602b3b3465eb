"""Intake in a real browser: reference previews, per-file messages, CSRF refusals."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from imagereview.models import Asset, ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import picture, request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_edit_form_previews_references_and_names_a_bad_file(
    live_server, new_page, requester, tmp_path
):
    good, bad = tmp_path / "harbour.png", tmp_path / "notes.png"
    good.write_bytes(picture("a harbour", "4:3"))
    bad.write_text("not an image at all")
    page = new_page()
    log_in(page, live_server.url, "alice", "alice-password")
    page.goto(f"{live_server.url}/requests/new/edit/")
    page.get_by_label("Prompt").fill("winter night")
    page.set_input_files("input[name=references]", [str(good), str(bad)])
    previews = page.locator(".reference-previews li")
    expect(previews).to_have_count(2)
    expect(previews.first).to_contain_text("edited · harbour.png")
    expect(previews.nth(1)).to_contain_text("guide · notes.png")
    page.get_by_role("button", name="Edit").click()
    expect(page.locator(".field-error")).to_contain_text("notes.png: the file is not a readable")
    assert not ImageRequest.objects.exists()


def test_editing_an_output_labels_every_upload_as_a_guide(
    live_server, new_page, requester, tmp_path
):
    output = request_in_review(requester, variants=1).assets.get(kind=Asset.Kind.OUTPUT)
    harbour, snow = tmp_path / "harbour.png", tmp_path / "snow.png"
    harbour.write_bytes(picture("a harbour", "4:3"))
    snow.write_bytes(picture("snow", "4:3"))
    page = new_page()
    log_in(page, live_server.url, "alice", "alice-password")
    page.goto(f"{live_server.url}/requests/new/edit/?from={output.pk}")
    expect(page.locator(".source-output")).to_contain_text(f"Editing output {output.pk}")
    page.set_input_files("input[name=references]", [str(harbour), str(snow)])
    previews = page.locator(".reference-previews li")
    expect(previews).to_have_count(2)
    expect(previews.first).to_contain_text("guide · harbour.png")
    expect(previews.nth(1)).to_contain_text("guide · snow.png")
    expect(page.locator(".reference-previews")).not_to_contain_text("edited")


def test_every_post_without_a_csrf_token_is_refused_in_the_browser(live_server, new_page, reviewer):
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    paths = [
        reverse("new_request"),
        reverse("new_edit"),
        reverse("import_batch"),
        reverse("bulk_decide"),
        reverse("decide", args=[1]),
        reverse("request_changes", args=[1]),
        reverse("undo_decision", args=[1]),
        reverse("resume_submissions"),
        reverse("logout"),
    ]
    for path in paths:
        # The session cookie goes along; the CSRF token does not.
        response = page.request.post(live_server.url + path, form={"verdict": "approve"})
        assert response.status == 403, path
