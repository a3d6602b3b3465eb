"""A guest link in a real browser: shared by a reviewer, used by a guest with no account, then
revoked while the guest still has the page open."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagereview.models import Annotation, Decision, GuestLink, ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


def test_a_guest_link_is_used_then_revoked(live_server, new_page, requester, reviewer):
    image_request = request_in_review(requester, prompt="a red bicycle by the sea")
    other = request_in_review(requester, prompt="not for guests", real_images=False)

    # The reviewer shares the request from its review page; the link is shown once.
    staff = new_page()
    log_in(staff, live_server.url, "rita", "rita-password")
    staff.goto(f"{live_server.url}/review/{image_request.pk}/")
    staff.get_by_text("Share with a guest").click()
    staff.get_by_label("For whom (optional)").fill("Acme brand team")
    staff.get_by_label("May approve or reject").check()
    staff.get_by_role("button", name="Create guest link").click()
    field = staff.get_by_label("Guest link")
    expect(field).to_be_visible()
    url = field.input_value()
    assert url.startswith(f"{live_server.url}/guest/")
    link = GuestLink.objects.get()
    assert link.may_decide and link.label == "Acme brand team"

    # A second browser, signed in as nobody, opens it and gives a name.
    guest = new_page(width=1280, height=900)
    guest.goto(url)
    guest.get_by_label("Your name").fill("Gemma Guest")
    guest.get_by_role("button", name="Continue").click()
    expect(guest.get_by_text("Reviewing as")).to_contain_text("Gemma Guest")
    expect(guest.locator(".guest-requests .queue-item")).to_have_count(1)
    expect(guest.get_by_text("not for guests")).to_have_count(0)
    guest.get_by_role("link", name=f"#{image_request.pk}").click()
    expect(guest.locator("#prompt")).to_have_text("a red bicycle by the sea")
    first = guest.locator("article.output").first
    expect(first.locator("img.output-image")).to_have_js_property("complete", True)
    assert first.locator("img.output-image").evaluate("img => img.naturalWidth") > 0

    # The guest pins a note on the first variant and comments on it as a whole, then
    # approves it.
    guest.get_by_role("button", name="Note m", exact=True).click()
    picture = first.locator(".guest-picture img")
    box = picture.bounding_box()
    guest.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    popover = guest.locator(".annotation-popover")
    popover.get_by_label("Note on this spot").fill("Remove the second buoy.")
    popover.get_by_role("button", name="Add note").click()
    expect(popover).to_have_count(0)
    expect(first.locator(".marker.pin")).to_have_count(1)
    first.get_by_label("Comment on variant 1").fill("Make the sea a little calmer.")
    first.get_by_role("button", name="Add comment").click()
    expect(first.locator(".notes")).to_contain_text("Make the sea a little calmer.")
    expect(first.locator(".notes")).to_contain_text("Remove the second buoy.")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        guest.evaluate("window.scrollTo(0, 0)")
        guest.screenshot(path=Path(SCREENSHOTS) / "guest.png")
    guest.locator("article.output").first.get_by_role("button", name="Approve").click()
    expect(guest.locator("article.output").first.locator(".decisions")).to_contain_text(
        "Approve by you"
    )
    expect(guest.locator("#request-status")).to_have_text("Approved")

    decision = Decision.objects.get()
    assert (decision.guest_name, decision.guest_link_id, decision.reviewer) == (
        "Gemma Guest",
        link.pk,
        None,
    )
    pin = Annotation.objects.get(shape="pin")
    assert (pin.guest_name, pin.guest_link_id, pin.author) == ("Gemma Guest", link.pk, None)
    assert pin.x == pytest.approx(0.25, abs=0.02) and pin.y == pytest.approx(0.75, abs=0.02)
    assert Annotation.objects.get(shape="box").comment == "Make the sea a little calmer."
    assert ImageRequest.objects.get(pk=image_request.pk).status == ImageRequest.Status.APPROVED

    # The reviewer sees the guest's name in the decisions, and the guest's notes.
    staff.goto(f"{live_server.url}/review/{image_request.pk}/")
    expect(staff.locator(f"#output-{decision.output_id} .notes")).to_contain_text(
        "Remove the second buoy."
    )
    expect(staff.locator(f"#output-{decision.output_id} .history")).to_contain_text(
        f"Approve by Gemma Guest (guest, link #{link.pk})"
    )

    # The other request stays out of reach, as if it did not exist.
    response = guest.request.get(url + f"requests/{other.pk}/")
    assert response.status == 404

    # The reviewer revokes the link; the guest's next reload says so.
    staff.goto(f"{live_server.url}/review/guest-links/")
    row = staff.locator(f"#guest-link-{link.pk}")
    expect(row).to_contain_text("Acme brand team")
    staff.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(staff.locator(f"#guest-link-{link.pk}")).to_contain_text("Revoked")

    guest.reload()
    expect(guest.get_by_role("heading", name="This link was revoked")).to_be_visible()
    expect(guest.locator("article.output")).to_have_count(0)


def test_a_reviewer_shares_a_queue_selection_as_one_link(
    live_server, new_page, requester, reviewer
):
    first, second, third = (
        request_in_review(requester, prompt=f"item {n}", real_images=False) for n in (1, 2, 3)
    )
    staff = new_page()
    log_in(staff, live_server.url, "rita", "rita-password")
    staff.goto(f"{live_server.url}/review/")
    staff.get_by_label(f"Select #{first.pk}").check()
    staff.get_by_label(f"Select #{third.pk}").check()
    staff.get_by_role("button", name="Share selected…").click()
    expect(staff.locator("#share-panel")).to_contain_text(f"Sharing #{first.pk}, #{third.pk}")
    staff.get_by_role("button", name="Create guest link").click()
    url = staff.get_by_label("Guest link").input_value()

    guest = new_page()
    guest.goto(url)
    guest.get_by_label("Your name").fill("Hal")
    guest.get_by_role("button", name="Continue").click()
    expect(guest.locator(".guest-requests .queue-item")).to_have_count(2)
    expect(guest.get_by_text("item 2")).to_have_count(0)
    guest.get_by_role("link", name=f"#{third.pk}").click()
    expect(guest.locator("#prompt")).to_have_text("item 3")
    # Look only: no decision buttons on a link that does not allow deciding.
    expect(guest.get_by_role("button", name="Approve")).to_have_count(0)
    assert set(GuestLink.objects.get().requests.all()) == {first, third}
    assert second.pk not in GuestLink.objects.get().requests.values_list("pk", flat=True)
