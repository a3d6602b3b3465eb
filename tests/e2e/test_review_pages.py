"""What reviewers do on the review pages, in a real browser."""

import pytest
from playwright.sync_api import expect

from imagereview.models import Decision, ImageRequest
from imagereview.roles import REVIEWERS
from tests.conftest import make_user, wait_for
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

R = ImageRequest.Status


def review_url(live_server, image_request: ImageRequest) -> str:
    return f"{live_server.url}/review/{image_request.pk}/"


def review_as_rita(live_server, new_page, image_request: ImageRequest, **viewport):
    """A page logged in as the reviewer rita, on the review page of `image_request`."""
    page = new_page(**viewport)
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(review_url(live_server, image_request))
    return page


def test_a_reviewer_decides_a_queue_by_keyboard_alone(live_server, new_page, requester, reviewer):
    first, second, third = (
        request_in_review(requester, prompt=f"item {n}", real_images=False) for n in (1, 2, 3)
    )
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    expect(page.locator(".queue-link").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(review_url(live_server, first))
    page.wait_for_load_state()

    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()

    page.keyboard.press("a")  # approve variant 1: the quota of one is met
    expect(page).to_have_url(review_url(live_server, second))
    page.wait_for_load_state()

    page.keyboard.press("r")
    page.keyboard.press("2")  # reject variant 1 as artefacts; variant 2 is selected next
    expect(page.locator("article.output").nth(1)).to_have_class(
        "output card selected", timeout=5000
    )
    page.keyboard.press("a")
    expect(page).to_have_url(review_url(live_server, third))
    page.wait_for_load_state()

    page.keyboard.press("j")
    page.keyboard.press("r")
    page.keyboard.press("6")  # unsafe
    expect(page.locator("article.output").first).to_have_class("output card selected")
    page.keyboard.press("r")
    page.keyboard.press("1")  # does not follow the prompt: nothing approvable is left
    expect(page).to_have_url(f"{live_server.url}/review/")

    statuses = [ImageRequest.objects.get(pk=r.pk).status for r in (first, second, third)]
    assert statuses == [R.APPROVED, R.APPROVED, R.REJECTED]
    reasons = list(
        Decision.objects.filter(output__request=third)
        .order_by("id")
        .values_list("reason", flat=True)
    )
    assert reasons == ["unsafe", "prompt"]
    assert set(Decision.objects.values_list("reviewer__username", flat=True)) == {"rita"}


def test_undo_works_from_the_next_item_after_advancing(live_server, new_page, requester, reviewer):
    first, second = (
        request_in_review(requester, prompt=f"item {n}", variants=1, real_images=False)
        for n in (1, 2)
    )
    page = review_as_rita(live_server, new_page, first)
    page.keyboard.press("a")
    expect(page).to_have_url(review_url(live_server, second))
    expect(page.locator(".toast")).to_contain_text(f"You approved variant 1 of #{first.pk}.")

    page.keyboard.press("u")
    expect(page).to_have_url(review_url(live_server, first))
    expect(page.locator("#request-status")).to_have_text("In review")
    assert Decision.objects.get().undone_at is not None
    assert ImageRequest.objects.get(pk=first.pk).status == R.IN_REVIEW


def test_before_after_slider_and_zoom_in_step_on_an_edit(
    live_server, new_page, requester, reviewer
):
    edit = request_in_review(requester, prompt="make it night", mode="edit", variants=1)
    reference = edit.assets.get(kind="reference")
    page = review_as_rita(live_server, new_page, edit)
    slider = page.locator(".compare-slider")
    expect(slider).to_be_hidden()

    page.keyboard.press("v")
    expect(slider).to_be_visible()
    before = slider.locator(".before img")
    expect(before).to_have_attribute("src", f"/assets/{reference.pk}/file/")
    expect(slider.locator(".after img")).to_have_attribute(
        "src", page.locator("article.output").first.get_attribute("data-file")
    )

    def shown_at(fraction: float) -> str:
        """Which image the eye meets at this fraction of the frame's width."""
        slider.scroll_into_view_if_needed()
        frame = slider.locator(".slider-frame").bounding_box()
        x, y = frame["x"] + frame["width"] * fraction, frame["y"] + frame["height"] / 2
        return page.evaluate(
            f"document.elementFromPoint({x}, {y}).closest('.zoomable').classList[1]"
        )

    assert (shown_at(0.4), shown_at(0.6)) == ("before", "after")
    page.locator(".slider-input").fill("30")
    assert (shown_at(0.2), shown_at(0.4)) == ("before", "after")
    page.locator(".slider-input").fill("80")
    assert (shown_at(0.7), shown_at(0.9)) == ("before", "after")

    page.keyboard.press("+")
    page.keyboard.press("+")
    page.locator("article.output .zoomable").scroll_into_view_if_needed()
    frame = page.locator("article.output .zoomable").bounding_box()
    page.mouse.move(frame["x"] + 200, frame["y"] + 200)
    page.mouse.down()
    page.mouse.move(frame["x"] + 140, frame["y"] + 170, steps=4)
    page.mouse.up()
    expect(page.locator(".zoom-level")).to_have_text("156%")
    # Each image, as drawn, is its frame scaled by 1.5625 and moved by the same drag.
    drawn = page.locator("#review-body .zoomable img").evaluate_all(
        """images => images.map(image => {
            const box = image.getBoundingClientRect();
            const frame = image.parentElement.getBoundingClientRect();
            return {
                scale: box.width / frame.width,
                dx: box.left + box.width / 2 - (frame.left + frame.width / 2),
                dy: box.top + box.height / 2 - (frame.top + frame.height / 2),
            };
        })"""
    )
    assert len(drawn) == 3  # before, after and the output card
    for image in drawn:
        assert image["scale"] == pytest.approx(1.5625, abs=0.01)
        assert (image["dx"], image["dy"]) == (pytest.approx(-60, abs=1), pytest.approx(-30, abs=1))


def test_the_live_queue_keeps_the_selection_and_refreshes_the_counts(
    live_server, new_page, requester, reviewer
):
    first = request_in_review(requester, prompt="first", variants=1, real_images=False)
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/")
    in_review = page.locator('#counts [data-status="in_review"]')
    expect(in_review).to_have_text("1")
    page.get_by_label(f"Select #{first.pk}").check()
    page.get_by_label("Reason for a bulk reject").select_option("unsafe")

    second = request_in_review(requester, prompt="second", variants=1, real_images=False)
    expect(page.locator(f'[data-request="{second.pk}"]')).to_be_visible(timeout=12_000)
    expect(in_review).to_have_text("2")
    expect(page.get_by_label(f"Select #{first.pk}")).to_be_checked()
    expect(page.get_by_label("Reason for a bulk reject")).to_have_value("unsafe")

    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(".messages")).to_contain_text(f"#{first.pk}: 1 output rejected")
    assert ImageRequest.objects.get(pk=first.pk).status == R.REJECTED
    assert ImageRequest.objects.get(pk=second.pk).status == R.IN_REVIEW


def test_the_queue_filters_have_labels(live_server, new_page, reviewer):
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    page.goto(f"{live_server.url}/review/")
    for label in ("Mode", "Age", "Sort", "Requester"):
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    page.get_by_label("Sort", exact=True).select_option("newest")
    expect(page).to_have_url(
        f"{live_server.url}/review/?mode=&requester=&age=&sort=newest&priority="
    )


def test_dialogs_are_modal_clickable_and_close_on_escape(
    live_server, new_page, requester, reviewer
):
    item = request_in_review(requester, variants=3, approval_quota=2, real_images=False)
    page = review_as_rita(live_server, new_page, item)
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_have_attribute("aria-modal", "true")
    expect(help_dialog.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("a")  # not behind the dialog
    page.keyboard.press("Tab")
    expect(help_dialog.get_by_role("button", name="Close")).to_be_focused()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()

    picker = page.get_by_role("dialog", name="Reject: pick a reason")
    page.keyboard.press("r")
    expect(picker).to_be_visible()
    expect(picker.get_by_role("button", name="1 Does not follow the prompt")).to_be_focused()
    page.keyboard.press("a")
    page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    page.keyboard.press("r")
    picker.get_by_role("button", name="Unsafe").click()
    expect(page.locator("article.output").first.locator(".verdict")).to_contain_text("Reject")
    assert list(Decision.objects.values_list("verdict", "reason")) == [("reject", "unsafe")]


def test_compare_mode_enlarges_the_variants_of_a_generate_request(
    live_server, new_page, requester, reviewer
):
    item = request_in_review(requester, variants=3, real_images=False)
    page = review_as_rita(live_server, new_page, item, width=1400)
    cards = page.locator("article.output")
    before = [cards.nth(i).bounding_box() for i in range(3)]
    assert before[0]["y"] == before[2]["y"]  # three in a row

    page.keyboard.press("v")
    expect(page.locator("#review-body")).to_have_class("review comparing")
    after = [cards.nth(i).bounding_box() for i in range(3)]
    assert after[0]["width"] > before[0]["width"] * 1.3
    assert after[2]["y"] > after[0]["y"] + after[0]["height"] / 2  # the third wraps


def test_the_wheel_scrolls_the_page_unless_an_image_is_zoomed(
    live_server, new_page, requester, reviewer
):
    item = request_in_review(requester, variants=3, real_images=False)
    page = review_as_rita(live_server, new_page, item, height=500)
    page.wait_for_load_state()
    page.evaluate("window.scrollTo(0, 0)")
    image = page.locator("article.output .zoomable").first
    box = image.bounding_box()
    assert 0 < box["y"] < 400
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 40)
    page.mouse.wheel(0, 200)
    wait_for(lambda: page.evaluate("window.scrollY") > 0, message="the page did not scroll")
    expect(page.locator(".zoom-level")).to_have_text("100%")

    page.evaluate("window.scrollTo(0, 0)")
    box = image.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 40)
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    expect(page.locator(".zoom-level")).to_have_text("115%")
    page.mouse.wheel(0, -100)  # zoomed in: the wheel zooms on, and the page stays put
    expect(page.locator(".zoom-level")).to_have_text("132%")
    assert page.evaluate("window.scrollY") == 0


@pytest.mark.cluster
def test_request_changes_submits_a_revision_shown_with_its_prompt_diff(
    live_server, start_cluster, new_page, requester, reviewer
):
    cluster = start_cluster()
    original = request_in_review(requester, prompt="a red fox in the snow", real_images=False)
    page = review_as_rita(live_server, new_page, original)
    page.keyboard.press("c")
    prompt = page.locator("article.output.selected textarea[name=prompt]")
    expect(prompt).to_be_focused()
    prompt.fill("a red fox jumping in deep snow")
    page.locator("article.output.selected").get_by_role("button", name="Submit revision").click()
    expect(page).to_have_url(f"{live_server.url}/review/")

    revision = wait_for(lambda: ImageRequest.objects.filter(parent=original).first())
    assert revision.revision == 2
    wait_for(
        lambda: ImageRequest.objects.get(pk=revision.pk).status == R.IN_REVIEW,
        timeout=60,
        message=f"the revision to be generated; cluster log:\n{cluster.log()}",
    )
    assert ImageRequest.objects.get(pk=original.pk).status == R.CHANGES_REQUESTED
    page.goto(review_url(live_server, revision))
    diff = page.locator(".revisions li[aria-current] .diff")
    expect(diff.locator("ins")).to_have_text(["jumping ", " deep"])
    expect(page.locator(".revisions li")).to_have_count(2)
    page.goto(review_url(live_server, original))
    expect(page.locator(".history")).to_contain_text(f"revision #{revision.pk}")


def test_a_requester_cannot_approve_their_own_request(live_server, new_page, db):
    maker = make_user("sam", REVIEWERS)
    own = request_in_review(maker, prompt="my own idea", variants=1, real_images=False)
    page = new_page()
    log_in(page, live_server.url, "sam", "sam-password")
    page.goto(review_url(live_server, own))
    expect(page.locator(".brief")).to_contain_text("someone else has to review it")
    expect(page.locator("article.output")).to_have_count(1)
    expect(page.locator("article.output form")).to_have_count(0)
    for key in "arc":
        page.keyboard.press(key)
    expect(page.locator("#reason-picker")).to_be_hidden()
    assert not Decision.objects.exists()
    assert ImageRequest.objects.get(pk=own.pk).status == R.IN_REVIEW


def test_two_reviewers_on_one_item_see_each_other_and_a_clear_conflict(
    live_server, new_page, requester, reviewer
):
    make_user("vic", REVIEWERS)
    item = request_in_review(requester, variants=3, approval_quota=2, real_images=False)
    rita, vic = new_page(), new_page()
    log_in(rita, live_server.url, "rita", "rita-password")
    log_in(vic, live_server.url, "vic", "vic-password")
    rita.goto(review_url(live_server, item))
    vic.goto(review_url(live_server, item))
    expect(vic.locator(".claim")).to_have_text("rita is reviewing this right now.")

    rita.locator("article.output").first.get_by_role("button", name="Approve").click()
    expect(rita.locator("article.output").first.locator(".verdict")).to_contain_text("Approve")

    vic_first = vic.locator("article.output").first
    vic_first.get_by_label("Reject reason").select_option("artefacts")
    vic_first.get_by_role("button", name="Reject").click()
    expect(vic.locator(".error.conflict")).to_contain_text("rita decided this output (approve)")
    assert Decision.objects.count() == 1

    # Having seen it, vic may still disagree, and that is recorded.
    vic.locator("article.output").first.get_by_label("Reject reason").select_option("artefacts")
    vic.locator("article.output").first.get_by_role("button", name="Reject").click()
    expect(vic.locator("article.output").first.locator(".history")).to_contain_text("by vic")
    assert Decision.objects.count() == 2


def test_markup_in_a_prompt_is_shown_as_inert_text(live_server, new_page, requester, reviewer):
    prompt = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & <b>bold</b>'
    item = request_in_review(requester, prompt=prompt, variants=1, real_images=False)
    page = new_page()
    log_in(page, live_server.url, "rita", "rita-password")
    for path in ("/review/", f"/review/{item.pk}/"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.pwned") is None
    expect(page.locator("#prompt")).to_have_text(prompt)
    asker = new_page()
    log_in(asker, live_server.url, "alice", "alice-password")
    asker.goto(f"{live_server.url}/requests/{item.pk}/")
    expect(asker.locator(".prompt").first).to_have_text(prompt)
    assert asker.evaluate("window.pwned") is None
