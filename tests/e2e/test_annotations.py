"""Notes on the image, in a real browser: drawn, listed, kept on their pixels under zoom,
resolved, turned into a revision with a guide image, and seen by the requester."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagereview.actions.annotations import add_annotation
from imagereview.models import Annotation, Asset, ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


def rect(locator) -> dict:
    return locator.evaluate(
        "el => { const r = el.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
    )


def relative(inner: dict, outer: dict) -> tuple[float, float, float, float]:
    """Where `inner` lies in `outer`, as fractions of its width and height."""
    return (
        (inner["x"] - outer["x"]) / outer["width"],
        (inner["y"] - outer["y"]) / outer["height"],
        inner["width"] / outer["width"],
        inner["height"] / outer["height"],
    )


def tip(pin: dict, outer: dict) -> tuple[float, float]:
    """Where a pin points: its lower left corner."""
    x, y, _, height = relative(pin, outer)
    return x, y + height


def close(values, expected, tolerance=0.01) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(values, expected, strict=True))


def wait_for_image(page, image) -> None:
    loaded = "img => img.complete && img.naturalWidth > 0"
    page.wait_for_function(loaded, arg=image.element_handle())


def write_note(page, text: str) -> None:
    popover = page.locator(".annotation-popover")
    expect(popover).to_be_visible()
    popover.get_by_label("Note on this").fill(text)
    popover.get_by_role("button", name="Add note").click()
    expect(popover).to_have_count(0)


def test_notes_from_drawing_to_a_revision_with_a_guide(live_server, new_page, requester, reviewer):
    image_request = request_in_review(requester, prompt="a street at night", variants=2)
    output = image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("generation__variant")[0]
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    card = page.locator(f"#output-{output.pk}")
    image = card.locator("img.output-image")
    expect(image).to_be_visible()
    wait_for_image(page, image)
    shown = rect(image)
    assert abs(shown["width"] - shown["height"]) < 2  # a square picture, not letterboxed

    # A box: note mode by the key, then a drag from (25%, 25%) to (60%, 50%).
    page.keyboard.press("m")
    expect(page.locator("body")).to_have_class(re.compile("note-mode"))
    page.mouse.move(shown["x"] + shown["width"] * 0.25, shown["y"] + shown["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(shown["x"] + shown["width"] * 0.4, shown["y"] + shown["height"] * 0.4)
    page.mouse.move(shown["x"] + shown["width"] * 0.6, shown["y"] + shown["height"] * 0.5)
    page.mouse.up()
    write_note(page, "remove the second lamp post")

    # A pin: note mode by the toolbar button, then a click at (80%, 85%).
    page.get_by_role("button", name="Note m", exact=True).click()
    page.mouse.click(shown["x"] + shown["width"] * 0.8, shown["y"] + shown["height"] * 0.85)
    write_note(page, "this sign is misspelt")

    items = card.locator(".annotation-list .note-item")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("remove the second lamp post")
    expect(items.nth(1)).to_contain_text("this sign is misspelt")
    drawn, pinned = Annotation.objects.order_by("id")
    assert drawn.shape == "box" and close(
        (drawn.x, drawn.y, drawn.width, drawn.height), (0.25, 0.25, 0.35, 0.25)
    )
    assert pinned.shape == "pin" and close((pinned.x, pinned.y), (0.8, 0.85))
    assert drawn.author == reviewer

    box = card.locator(f'.marker[data-note="{drawn.pk}"]')
    pin = card.locator(f'.marker[data-note="{pinned.pk}"]')
    assert close(relative(rect(box), rect(image)), (0.25, 0.25, 0.35, 0.25))
    assert close(tip(rect(pin), rect(image)), (0.8, 0.85))

    # Hovering a marker lights up its line in the list, and the other way round.
    box.hover()
    expect(items.nth(0)).to_have_class("note-item highlighted")
    items.nth(1).hover()
    expect(pin).to_have_class("marker pin highlighted")

    # Zoomed in and panned, the markers stay on the same pixels of the picture.
    page.mouse.move(10, 10)
    for _ in range(3):
        page.get_by_role("button", name="Zoom in").click()
    middle = rect(card.locator(".zoomable"))
    page.mouse.move(middle["x"] + middle["width"] / 2, middle["y"] + middle["height"] / 2)
    page.mouse.down()
    page.mouse.move(middle["x"] + middle["width"] / 2 - 60, middle["y"] + middle["height"] / 2 - 40)
    page.mouse.up()
    zoomed = rect(image)
    assert zoomed["width"] > shown["width"] * 1.9
    assert close(relative(rect(box), zoomed), (0.25, 0.25, 0.35, 0.25))
    assert close(tip(rect(pin), zoomed), (0.8, 0.85))
    page.get_by_role("button", name="Fit").click()

    # Resolve the pin: it leaves the list and the picture until resolved ones are shown.
    items.nth(1).get_by_role("button", name="Resolve").click()
    expect(card.locator(".note-item.resolved")).to_be_hidden()
    expect(card.locator(".marker.resolved")).to_be_hidden()
    card.get_by_role("button", name="Show resolved").click()
    expect(card.locator(".note-item.resolved")).to_be_visible()
    expect(card.locator(".marker.resolved")).to_be_visible()
    pinned.refresh_from_db()
    assert pinned.resolved_by == reviewer

    if SCREENSHOTS:
        card.locator(".note-item.resolved").get_by_role("button", name="Reopen").click()
        expect(card.locator(".note-item.resolved")).to_have_count(0)
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        card.screenshot(path=Path(SCREENSHOTS) / "annotations.png")
        card.locator(f'.note-item[data-note="{pinned.pk}"]').get_by_role(
            "button", name="Resolve"
        ).click()
        expect(card.locator(".note-item.resolved")).to_have_count(1)

    # Request changes from the open note: the prompt is written, the output is the edit.
    card.locator("details.changes summary").click()
    card.get_by_role("button", name="Fill from notes (1)").click()
    prompt = card.get_by_label("Revised prompt")
    expect(prompt).to_have_value(
        "Edit this image. Change only what the notes ask, and keep everything else as it is:\n"
        "1. In the centre: remove the second lamp post.\n"
        "The second image is a copy of this one with each place outlined and numbered in red: "
        "use it only to find the places, and do not draw the outlines or the numbers."
    )
    expect(card.get_by_label("Start the revision as an edit of this output")).to_be_checked()
    guide = card.get_by_label("Send a guide image with the notes drawn")
    expect(guide).to_be_checked()
    guide.uncheck()
    expect(prompt).to_have_value(re.compile(r"remove the second lamp post\.$"))
    guide.check()
    expect(prompt).to_have_value(re.compile(r"or the numbers\.$"))
    card.get_by_role("button", name="Submit revision").click()
    page.wait_for_url(lambda url: f"/review/{image_request.pk}/" not in url)

    revision = ImageRequest.objects.get(parent=image_request)
    assert revision.mode == "edit" and "remove the second lamp post" in revision.prompt
    references = list(revision.assets.filter(kind="reference").order_by("index"))
    assert [r.content_type for r in references] == [output.content_type, "image/jpeg"]
    assert references[0].sha256 == output.sha256
    drawn.refresh_from_db()
    pinned.refresh_from_db()
    assert drawn.answered_by == revision and pinned.answered_by is None

    # The revision's page says which note it answers.
    page.goto(f"{live_server.url}/review/{revision.pk}/")
    expect(page.locator(".revisions")).to_contain_text(
        "answers 1 note: 1. remove the second lamp post"
    )

    # The requester sees the notes, placed, on their request page, and cannot resolve them.
    asker = new_page()
    log_in(asker, live_server.url, "alice", "alice-password")
    asker.goto(f"{live_server.url}/requests/{image_request.pk}/")
    outcome = asker.locator(f"#output-{output.pk}")
    expect(outcome.locator(".note-item").first).to_contain_text("remove the second lamp post")
    expect(outcome.get_by_role("button", name="Resolve", exact=True)).to_have_count(0)
    thumb = outcome.locator(".annotated-image img")
    wait_for_image(asker, thumb)
    marker = outcome.locator(f'.marker[data-note="{drawn.pk}"]')
    expect(marker).to_be_visible()
    picture = rect(thumb)
    side = min(picture["width"], picture["height"])  # object-fit: contain in a square box
    picture = {
        "x": picture["x"] + (picture["width"] - side) / 2,
        "y": picture["y"] + (picture["height"] - side) / 2,
        "width": side,
        "height": side,
    }
    assert close(relative(rect(marker), picture), (0.25, 0.25, 0.35, 0.25), tolerance=0.02)


def test_a_note_that_is_refused_says_why_in_its_form(live_server, new_page, requester, reviewer):
    image_request = request_in_review(requester, variants=1, real_images=False)
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    image = page.locator("img.output-image")
    wait_for_image(page, image)
    shown = rect(image)
    page.keyboard.press("m")
    page.mouse.click(shown["x"] + shown["width"] / 2, shown["y"] + shown["height"] / 2)
    popover = page.locator(".annotation-popover")
    popover.get_by_label("Note on this spot").fill("x" * 1999)
    popover.get_by_label("Note on this spot").evaluate("el => { el.removeAttribute('maxlength'); }")
    popover.get_by_label("Note on this spot").fill("x" * 2001)
    popover.get_by_role("button", name="Add note").click()
    expect(popover.locator(".error")).to_have_text(
        "A note can have at most 2,000 characters; this one has 2,001."
    )
    page.keyboard.press("Escape")
    expect(popover).to_have_count(0)
    expect(page.locator("body")).not_to_have_class(re.compile("note-mode"))
    assert not Annotation.objects.exists()


def test_notes_in_the_viewer_stay_on_their_pixels_at_any_zoom(
    live_server, new_page, requester, reviewer
):
    image_request = request_in_review(requester, variants=1)
    output = image_request.assets.get(kind=Asset.Kind.OUTPUT)
    drawn = add_annotation(
        output=output, author=reviewer, shape="box", x=0.25, y=0.25, width=0.35, height=0.25,
        comment="remove the second lamp post",
    )  # fmt: skip
    pinned = add_annotation(
        output=output, author=reviewer, shape="pin", x=0.8, y=0.85, comment="misspelt"
    )
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/outputs/{output.pk}/view/")
    expect(page.locator(".viewer-zoom")).to_contain_text("Fit")
    picture = page.locator("[data-viewer-image]")
    box = page.locator(f'.marker[data-note="{drawn.pk}"]')
    pin = page.locator(f'.marker[data-note="{pinned.pk}"]')
    expect(box).to_be_visible()

    def assert_in_place() -> None:
        shown = rect(picture)
        assert close(relative(rect(box), shown), (0.25, 0.25, 0.35, 0.25))
        assert close(tip(rect(pin), shown), (0.8, 0.85))

    assert_in_place()
    fit_width = rect(picture)["width"]
    page.keyboard.press("1")
    expect(page.locator(".viewer-zoom")).to_have_text("100%")
    page.keyboard.press("+")
    page.keyboard.press("+")
    assert rect(picture)["width"] > fit_width * 1.5
    assert_in_place()
    # The pin keeps its size on screen whatever the zoom.
    assert 20 <= rect(pin)["width"] <= 32

    # A note added at 1:1 and more lands on the image pixel that was clicked.
    target = page.evaluate(
        """() => {
          const r = document.querySelector("[data-viewer-image]").getBoundingClientRect();
          const stage = document.getElementById("viewer-stage").getBoundingClientRect();
          const x = Math.max(r.left, stage.left) + 40, y = Math.max(r.top, stage.top) + 40;
          return {x, y, fx: (x - r.left) / r.width, fy: (y - r.top) / r.height};
        }"""
    )
    page.get_by_role("button", name="Note m", exact=True).click()
    page.mouse.click(target["x"], target["y"])
    write_note(page, "a seam in the sky")
    added = Annotation.objects.get(comment="a seam in the sky")
    assert added.shape == "pin" and close((added.x, added.y), (target["fx"], target["fy"]), 0.002)
    expect(page.locator(f'.marker[data-note="{added.pk}"]')).to_have_count(1)

    # Esc leaves note mode, not the viewer.
    page.keyboard.press("m")
    expect(page.locator("body")).to_have_class(re.compile("note-mode"))
    page.keyboard.press("Escape")
    expect(page.locator("body")).not_to_have_class(re.compile("note-mode"))
    assert "/view/" in page.url


def test_markers_are_placed_again_after_a_decision_swaps_the_page(
    live_server, new_page, requester, reviewer
):
    image_request = request_in_review(requester, variants=2, real_images=False)
    first, second = image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by(
        "generation__variant"
    )
    note = add_annotation(
        output=second, author=reviewer, shape="box", x=0.5, y=0.5, width=0.25, height=0.25,
        comment="a smudge",
    )  # fmt: skip
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    page.keyboard.press("r")
    page.keyboard.press("2")  # reject the first variant: the page body is swapped by htmx
    expect(page.locator(f"#output-{first.pk}")).to_have_attribute("data-verdict", "reject")
    image = page.locator(f"#output-{second.pk} img.output-image")
    wait_for_image(page, image)
    marker = page.locator(f'.marker[data-note="{note.pk}"]')
    expect(marker).to_be_visible()
    assert close(relative(rect(marker), rect(image)), (0.5, 0.5, 0.25, 0.25))
