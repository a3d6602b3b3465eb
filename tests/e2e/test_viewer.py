"""The full-size viewer and the review page's previews, in a real browser."""

import io
import os
import re
from pathlib import Path

import pytest
from django.urls import reverse
from PIL import Image
from playwright.sync_api import expect

from imagereview.models import Asset, ImageRequest
from imagereview.providers.sandbox import render
from tests.e2e.conftest import log_in
from tests.viewer_support import GREY, RED, large_request, marked_picture, outputs_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PIXEL = (2100, 1300)
GREEN = (40, 170, 60)
BLUE = (40, 70, 200)
ORANGE = (230, 140, 30)


def viewer_as_rita(live_server, new_page, output: Asset, query: str = ""):
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(live_server.url + reverse("view_output", args=[output.pk]) + query)
    return page


def screen_colour(page, point: tuple[float, float]) -> tuple[int, int, int]:
    """The colour the browser shows at a CSS pixel of the page (device scale factor 1)."""
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    return shot.getpixel((int(point[0]), int(point[1])))


def on_screen(page, image_point: tuple[float, float]) -> tuple[float, float]:
    """Where the centre of an image pixel is on the page, from the viewer's transform."""
    return page.evaluate(
        """([px, py]) => {
          const stage = document.getElementById("viewer-stage").getBoundingClientRect();
          const s = window.viewerState;
          return [stage.left + s.x + (px + 0.5) * s.scale, stage.top + s.y + (py + 0.5) * s.scale];
        }""",
        list(image_point),
    )


def near(colour, expected, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def original_loaded(page, pane: str = ".viewer-a") -> None:
    expect(page.locator(f"{pane} .viewer-image")).to_have_attribute("data-loaded", "original")


def test_one_to_one_shows_a_known_pixel_of_the_original_where_the_transform_says(
    live_server, new_page, requester, reviewer
):
    picture = marked_picture((3000, 2000), marks={PIXEL: RED})
    output = outputs_of(large_request(requester, variants=1, pictures=[picture]))[0]
    requested: list[str] = []
    page = viewer_as_rita(live_server, new_page, output)
    page.on("request", lambda request: requested.append(request.url))
    # Fit: the whole image on screen, from the preview, the original not fetched.
    expect(page.locator(".viewer-zoom")).to_have_text(re.compile(r"^Fit · \d+%$"))
    box = page.locator("[data-viewer-image]")
    expect(box).to_have_attribute("data-loaded", "preview")
    assert page.evaluate("window.viewerState.scale") < 0.5
    assert not any(url.endswith(f"/assets/{output.pk}/file/") for url in requested)

    page.keyboard.press("1")
    expect(page.locator(".viewer-zoom")).to_have_text("100%")
    original_loaded(page)
    assert any(url.endswith(f"/assets/{output.pk}/file/") for url in requested)
    assert page.evaluate("window.viewerState.scale * devicePixelRatio") == 1
    # 1:1 keeps the centre: the red pixel, right of and below it, is on the screen.
    x, y = on_screen(page, PIXEL)
    assert screen_colour(page, (x, y)) == RED
    assert screen_colour(page, (x + 1, y)) == GREY
    assert screen_colour(page, (x, y - 1)) == GREY

    # Panning by key and by drag moves it by exactly as much.
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Shift+ArrowRight")
    moved = on_screen(page, PIXEL)
    assert moved[1] > y and moved[0] < x
    assert screen_colour(page, moved) == RED
    page.mouse.move(700, 500)
    page.mouse.down()
    page.mouse.move(640, 460, steps=4)
    page.mouse.up()
    dragged = on_screen(page, PIXEL)
    assert (round(moved[0] - dragged[0]), round(moved[1] - dragged[1])) == (60, 40)
    assert screen_colour(page, dragged) == RED

    page.keyboard.press("0")
    expect(page.locator(".viewer-zoom")).to_have_text(re.compile(r"^Fit"))
    # A double click on the spot opens it at 1:1 under the middle of the window.
    page.mouse.dblclick(*on_screen(page, PIXEL))
    expect(page.locator(".viewer-zoom")).to_have_text("100%")
    stage = page.locator("#viewer-stage").bounding_box()
    x, y = on_screen(page, PIXEL)
    assert abs(x - (stage["x"] + stage["width"] / 2)) <= 4
    assert abs(y - (stage["y"] + stage["height"] / 2)) <= 4
    assert screen_colour(page, (x, y)) == RED
    page.mouse.dblclick(x, y)
    expect(page.locator(".viewer-zoom")).to_have_text(re.compile(r"^Fit"))


def test_a_linked_place_at_800_percent_shows_the_pixel_as_a_sharp_square(
    live_server, new_page, requester, reviewer
):
    picture = marked_picture((3000, 2000), marks={PIXEL: RED})
    output = outputs_of(large_request(requester, variants=1, pictures=[picture]))[0]
    page = viewer_as_rita(live_server, new_page, output, f"?x={PIXEL[0]}&y={PIXEL[1]}&zoom=8")
    expect(page.locator(".viewer-zoom")).to_have_text("800%")
    original_loaded(page)
    stage = page.locator("#viewer-stage").bounding_box()
    left, top = on_screen(page, PIXEL)
    left, top = left - 4, top - 4  # the pixel's square is 8 by 8 CSS pixels
    # The pixel is centred, and drawn as a square of one colour without blending.
    assert abs(left + 4 - (stage["x"] + stage["width"] / 2)) <= 1
    assert abs(top + 4 - (stage["y"] + stage["height"] / 2)) <= 1
    for dx, dy in ((0, 0), (7, 0), (0, 7), (7, 7), (3, 4)):
        assert screen_colour(page, (left + dx, top + dy)) == RED
    assert screen_colour(page, (left - 1, top + 3)) == GREY
    assert screen_colour(page, (left + 8, top + 3)) == GREY
    page.keyboard.press("+")
    expect(page.locator(".viewer-zoom")).to_have_text("800%")  # the ceiling


def pane_shows(page, fraction: float) -> tuple[int, int, int]:
    stage = page.locator("#viewer-stage").bounding_box()
    point = (stage["x"] + stage["width"] * fraction, stage["y"] + stage["height"] / 2)
    return screen_colour(page, point)


def test_a_b_against_the_reference_by_slider_and_toggle(live_server, new_page, requester, reviewer):
    image_request = large_request(
        requester,
        variants=1,
        pictures=[marked_picture(background=GREEN)],
        reference=marked_picture((2400, 1600), background=BLUE),
    )
    output = outputs_of(image_request)[0]
    page = viewer_as_rita(live_server, new_page, output)
    page.locator("#viewer-compare").select_option(label="Reference 1")
    # Choosing B opens the slider: A left of the divider, B right of it.
    expect(page.locator("#viewer")).to_have_attribute("data-mode", "slider")
    expect(page.locator(".viewer-b img")).to_have_js_property("complete", True)
    page.wait_for_function("document.querySelector('.viewer-b img').naturalWidth > 0")
    assert near(pane_shows(page, 0.25), GREEN)
    assert near(pane_shows(page, 0.75), BLUE)

    # The divider drags: B now shows from 20% of the width.
    divider = page.locator(".viewer-divider").bounding_box()
    stage = page.locator("#viewer-stage").bounding_box()
    page.mouse.move(divider["x"] + divider["width"] / 2, stage["y"] + stage["height"] / 2)
    page.mouse.down()
    page.mouse.move(stage["x"] + stage["width"] * 0.2, stage["y"] + stage["height"] / 2, steps=5)
    page.mouse.up()
    assert near(pane_shows(page, 0.15), GREEN)
    assert near(pane_shows(page, 0.3), BLUE)

    # Toggle: B whole, then A whole, by t or Space.
    page.keyboard.press("t")
    expect(page.locator("#viewer")).to_have_attribute("data-showing", "B")
    assert near(pane_shows(page, 0.15), BLUE) and near(pane_shows(page, 0.75), BLUE)
    page.keyboard.press(" ")
    expect(page.locator("#viewer")).to_have_attribute("data-showing", "A")
    assert near(pane_shows(page, 0.15), GREEN) and near(pane_shows(page, 0.75), GREEN)

    # Zoom and pan stay in step: both images take one transform, and B's original loads too.
    page.keyboard.press("t")
    page.keyboard.press("1")
    page.keyboard.press("ArrowDown")
    transforms = page.locator(".viewer-image").evaluate_all(
        "boxes => boxes.map((box) => box.style.transform)"
    )
    assert len(transforms) == 2 and transforms[0] == transforms[1]
    assert "scale(1)" in transforms[0]
    original_loaded(page, ".viewer-b")


def test_a_b_against_an_earlier_revision_and_stepping_between_versions(
    live_server, new_page, requester, reviewer
):
    first = large_request(requester, variants=2, pictures=[marked_picture(background=ORANGE)] * 2)
    revision = large_request(
        requester, variants=2, parent=first, pictures=[marked_picture(background=GREEN)] * 2
    )
    old_output = outputs_of(first)[1]
    new_output = outputs_of(revision)[1]
    page = viewer_as_rita(live_server, new_page, new_output)
    page.locator("#viewer-compare").select_option(label="v1 · Variant 2")
    page.keyboard.press("t")
    expect(page.locator("#viewer")).to_have_attribute("data-showing", "B")
    page.wait_for_function("document.querySelector('.viewer-b img').naturalWidth > 0")
    assert near(pane_shows(page, 0.5), ORANGE)
    page.keyboard.press("t")
    assert near(pane_shows(page, 0.5), GREEN)

    # [ opens the same variant in the previous version, at the same zoom; ] comes back.
    page.keyboard.press("1")
    page.keyboard.press("[")
    expect(page).to_have_url(re.compile(rf"/review/outputs/{old_output.pk}/view/\?zoom=1\.0+&"))
    expect(page.locator(".viewer-zoom")).to_have_text("100%")
    page.keyboard.press("]")
    expect(page).to_have_url(re.compile(rf"/review/outputs/{new_output.pk}/view/"))
    # ← and → step between the variants of the request; Esc goes back to the review page.
    page.keyboard.press("ArrowRight")
    expect(page).to_have_url(re.compile(rf"/review/outputs/{outputs_of(revision)[0].pk}/view/"))
    page.keyboard.press("i")
    expect(page.locator("#viewer-info")).to_be_visible()
    expect(page.locator("#viewer-info .prompt")).to_have_text(revision.prompt)
    # The panel takes the right side, and the image keeps clear of it.
    panel = page.locator("#viewer-info").bounding_box()
    stage = page.locator("#viewer-stage").bounding_box()
    assert stage["x"] + stage["width"] <= panel["x"] + 1
    page.keyboard.press("i")
    expect(page.locator("#viewer-info")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(page).to_have_url(re.compile(rf"/review/{revision.pk}/"))


def test_the_review_page_loads_previews_and_the_original_only_past_their_resolution(
    live_server, new_page, requester, reviewer
):
    image_request = large_request(requester, variants=2)
    first, second = outputs_of(image_request)
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    page.wait_for_function(
        "[...document.querySelectorAll('.output-image')].every((i) => i.complete && i.naturalWidth)"
    )
    assets = [re.sub(r"^.*(/assets/)", r"\1", url) for url in requested if "/assets/" in url]
    assert sorted(assets) == sorted(f"/assets/{output.pk}/preview/" for output in (first, second))
    sizes = page.locator(".output-image").evaluate_all(
        "imgs => imgs.map((img) => [img.naturalWidth, img.getBoundingClientRect().width])"
    )
    assert all(natural == 2048 and shown < 2048 for natural, shown in sizes)

    for _ in range(7):  # 1.25 ** 7: past 2048 px on screen
        page.keyboard.press("+")
    for output in (first, second):
        expect(page.locator(f"#output-{output.pk} .output-image")).to_have_attribute(
            "src", f"/assets/{output.pk}/file/"
        )
    page.wait_for_function(
        "[...document.querySelectorAll('.output-image')].every((i) => i.naturalWidth === 3000)"
    )
    # Zoom and pan stay in step across the cards after the swap.
    transforms = page.locator(".output-image").evaluate_all(
        "imgs => imgs.map((img) => img.style.transform)"
    )
    assert transforms[0] == transforms[1] and "scale(" in transforms[0]

    page.keyboard.press("0")
    page.keyboard.press("j")
    page.keyboard.press("f")
    expect(page).to_have_url(f"{live_server.url}/review/outputs/{second.pk}/view/")
    expect(page.locator("#viewer[data-zoom]")).to_be_attached()  # its keys are listened to
    page.keyboard.press("Escape")
    expect(page).to_have_url(re.compile(rf"/review/{image_request.pk}/#output-{second.pk}$"))


def test_the_compare_slider_shows_previews_and_sharpens_each_output_it_is_given(
    live_server, new_page, requester, reviewer
):
    image_request = large_request(requester, variants=2, reference=marked_picture((2400, 1600)))
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    first, second = outputs_of(image_request)
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    before = page.locator(".compare-slider .before img")
    after = page.locator("[data-compare-after]")
    page.keyboard.press("v")
    expect(before).to_have_attribute("src", f"/assets/{reference.pk}/preview/")
    expect(after).to_have_attribute("src", f"/assets/{first.pk}/preview/")
    for _ in range(7):
        page.keyboard.press("+")
    expect(before).to_have_attribute("src", f"/assets/{reference.pk}/file/")
    expect(after).to_have_attribute("src", f"/assets/{first.pk}/file/")
    # The next output comes in as its preview, then as its original at this zoom; and back.
    page.keyboard.press("j")
    expect(after).to_have_attribute("src", f"/assets/{second.pk}/file/")
    page.keyboard.press("k")
    expect(after).to_have_attribute("src", f"/assets/{first.pk}/file/")
    # At fit a change of output shows previews; zooming in again sharpens the one shown.
    page.keyboard.press("0")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(after).to_have_attribute("src", f"/assets/{first.pk}/preview/")
    for _ in range(7):
        page.keyboard.press("+")
    expect(after).to_have_attribute("src", f"/assets/{first.pk}/file/")


@pytest.mark.skipif(not os.environ.get("SCREENSHOT_DIR"), reason="set SCREENSHOT_DIR to write it")
def test_screenshot_of_the_viewer_in_a_b_slider_mode(live_server, new_page, requester, reviewer):
    reference = render.render(
        "a harbour at dawn", aspect_ratio="3:2", resolution="2K", texture="photo"
    )
    edited = render.render(
        "the same harbour at dusk", aspect_ratio="3:2", resolution="2K", reference=reference
    )
    image_request = large_request(
        requester,
        variants=1,
        pictures=[edited],
        reference=reference,
        prompt="the same harbour at dusk, lights on the quay",
    )
    assert image_request.mode == ImageRequest.Mode.EDIT
    output = outputs_of(image_request)[0]
    page = viewer_as_rita(live_server, new_page, output)
    page.locator("#viewer-compare").select_option(label="Reference 1")
    page.wait_for_function("document.querySelector('.viewer-b img').naturalWidth > 0")
    page.keyboard.press("i")
    directory = Path(os.environ["SCREENSHOT_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=directory / "viewer.png")
