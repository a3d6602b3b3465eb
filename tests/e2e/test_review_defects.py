"""What a first-time reviewer stumbled on (issue 12, part 6), each in a real browser."""

import io

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from imagereview import actions
from imagereview.models import Asset, Decision, Generation, ImageRequest
from tests.e2e.conftest import log_in
from tests.factories import request_in_review, stored_asset

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

R = ImageRequest.Status
HEADER_BOTTOM = "document.querySelector('.topbar').getBoundingClientRect().bottom"


def portrait_picture(shade: int) -> bytes:
    image = Image.new("RGB", (800, 1200), (shade, 120, 200 - shade))
    draw = ImageDraw.Draw(image)
    for y in range(0, 1200, 100):
        draw.line([(0, y), (800, y + 50)], fill=(255, 255, 255), width=6)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def portrait_request(requester, variants: int, prompt: str = "a tall tower") -> ImageRequest:
    image_request = ImageRequest.objects.create(
        requester=requester,
        prompt=prompt,
        variants=variants,
        aspect_ratio="2:3",
        status=R.IN_REVIEW,
    )
    for variant in range(1, variants + 1):
        generation = Generation.objects.create(
            request=image_request,
            variant=variant,
            state=Generation.State.STORED,
            provider_task_id=f"task_{image_request.pk}_{variant}",
        )
        stored_asset(
            image_request,
            portrait_picture(variant * 40),
            kind=Asset.Kind.OUTPUT,
            generation=generation,
        )
    return image_request


def as_user(live_server, new_page, username: str, path: str, **viewport):
    page = new_page(**viewport)
    log_in(page, live_server.url, username, f"{username}-password")
    page.goto(f"{live_server.url}{path}")
    page.wait_for_load_state("networkidle")
    return page


def first_output(image_request: ImageRequest) -> Asset:
    return image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("generation__variant")[0]


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


# 1. On load the page scrolled the selected card into view, under the sticky header.


def test_review_page_load_keeps_toolbar_and_undo_bar_below_the_header(
    live_server, new_page, requester, reviewer
):
    earlier = request_in_review(requester, prompt="decided before", variants=1, real_images=False)
    actions.decide(output=first_output(earlier), reviewer=reviewer, verdict="approve")
    tall = portrait_request(requester, variants=1)
    page = as_user(live_server, new_page, "rita", f"/review/{tall.pk}/", width=1440, height=900)
    # Come back to it: with its images cached their size is known as the script runs, and
    # the card, taller than the window, was scrolled to the top under the header.
    page.goto(f"{live_server.url}/review/{tall.pk}/")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    header_bottom = page.evaluate(HEADER_BOTTOM)
    expect(page.locator(".toast")).to_contain_text(f"of #{earlier.pk}")
    assert box(page, ".toolbar")["y"] >= header_bottom
    assert box(page, ".toast")["y"] >= header_bottom
    assert page.evaluate("window.scrollY") == 0


# 2. Four portrait variants wrapped at 1440 px; three were about 290 px wide.


def test_four_portrait_variants_share_one_row_at_1440(live_server, new_page, requester, reviewer):
    four = portrait_request(requester, variants=4)
    page = as_user(live_server, new_page, "rita", f"/review/{four.pk}/", width=1440, height=900)
    tops = [round(card.bounding_box()["y"]) for card in page.locator("article.output").all()]
    assert len(tops) == 4
    assert len(set(tops)) == 1, tops


def test_three_variants_use_the_width_at_1440(live_server, new_page, requester, reviewer):
    three = request_in_review(requester, prompt="three squares", variants=3, real_images=False)
    page = as_user(live_server, new_page, "rita", f"/review/{three.pk}/", width=1440, height=900)
    widths = [image.bounding_box()["width"] for image in page.locator(".output-image").all()]
    assert len(widths) == 3
    assert min(widths) > 310, widths


# 3. `u` after a change request undid an older, different decision.


def test_u_after_a_change_request_says_it_cannot_be_undone(
    live_server, new_page, requester, reviewer
):
    approved = request_in_review(requester, prompt="approved first", variants=1, real_images=False)
    actions.decide(output=first_output(approved), reviewer=reviewer, verdict="approve")
    changed = request_in_review(requester, prompt="then changed", variants=1, real_images=False)
    actions.request_changes(
        output=first_output(changed),
        reviewer=reviewer,
        prompt="then changed, bluer",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    page = as_user(live_server, new_page, "rita", "/review/")
    toast = page.locator(".toast")
    expect(toast).to_have_text(
        "Your last decision (a change request) cannot be undone: the revision is submitted."
    )
    expect(page.locator("#undo")).to_have_count(0)
    page.keyboard.press("u")
    page.wait_for_timeout(500)
    assert page.url == f"{live_server.url}/review/"
    assert Decision.objects.get(output__request=approved).undone_at is None
    assert ImageRequest.objects.get(pk=approved.pk).status == R.APPROVED


# 4. Undoing a bulk approve of two items took two presses, each on another page.


def test_one_undo_takes_back_a_bulk_approve_and_stays_on_the_queue(
    live_server, new_page, requester, reviewer
):
    first, second = (
        request_in_review(requester, prompt=f"bulk {n}", variants=1, real_images=False)
        for n in (1, 2)
    )
    page = as_user(live_server, new_page, "rita", "/review/")
    page.get_by_label("Select all on this page").check()
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_load_state()
    expect(page.locator(".toast")).to_contain_text(
        f"You approved 2 items at once (#{first.pk}, #{second.pk})."
    )
    page.wait_for_load_state("load")  # the queue's keys are live
    assert {r.status for r in ImageRequest.objects.all()} == {R.APPROVED}

    page.keyboard.press("u")
    expect(page.locator(".messages")).to_contain_text(
        f"Undone: your bulk approve of #{first.pk}, #{second.pk}."
    )
    assert page.url.startswith(f"{live_server.url}/review/")
    assert "/review/" + str(first.pk) not in page.url and str(second.pk) + "/" not in page.url
    assert {r.status for r in ImageRequest.objects.all()} == {R.IN_REVIEW}
    assert Decision.objects.filter(undone_at__isnull=True).count() == 0
    expect(page.locator(".queue-item")).to_have_count(2)


# 5. A prompt pasted over 10,000 characters was cut silently by `maxlength`.


def test_a_pasted_overlong_prompt_is_kept_and_explained(live_server, new_page, requester):
    page = as_user(live_server, new_page, "alice", "/requests/new/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    text = "a lighthouse at dusk " * 478 + "x" * 12  # 10,050 characters
    assert len(text) == 10_050
    page.evaluate("(text) => navigator.clipboard.writeText(text)", text)
    prompt = page.locator("textarea[name=prompt]")
    prompt.focus()
    page.keyboard.press("Control+V")
    assert page.evaluate("document.querySelector('textarea[name=prompt]').value.length") == 10_050
    count = page.locator(".length-count")
    expect(count).to_have_class("length-count over")
    expect(count).to_contain_text("The paste made the prompt 10,050 characters, 50 over")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".field-error").first).to_contain_text(
        "at most 10,000 characters (it has 10050)"
    )
    assert not ImageRequest.objects.exists()


def test_the_revised_prompt_is_not_cut_either(live_server, new_page, requester, reviewer):
    item = request_in_review(requester, prompt="short", variants=1, real_images=False)
    page = as_user(live_server, new_page, "rita", f"/review/{item.pk}/")
    page.keyboard.press("c")
    box_ = page.locator("details.changes textarea[name=prompt]").first
    box_.fill("")
    page.keyboard.insert_text("y" * 10_001)
    assert box_.evaluate("(el) => el.value.length") == 10_001
    expect(page.locator("details.changes .length-count").first).to_contain_text(
        "1 over the limit of 10,000"
    )


# 6. An unbroken long prompt stretched the queue rows past the page.


@pytest.mark.parametrize("width", [1024, 390])
def test_a_long_unbroken_prompt_stays_inside_the_queue(
    live_server, new_page, requester, reviewer, width
):
    request_in_review(requester, prompt="x" * 2_000, variants=1, real_images=False)
    page = as_user(live_server, new_page, "rita", "/review/", width=width, height=800)
    row = box(page, ".queue-link")
    assert row["x"] + row["width"] <= width
    text = page.locator(".queue-text").first
    assert text.evaluate("(el) => el.scrollWidth <= el.clientWidth")
    overflowing = page.evaluate(
        """(width) => [...document.querySelectorAll('#queue *')]
            .filter((el) => el.getBoundingClientRect().right > width + 1)
            .map((el) => el.className || el.tagName)""",
        width,
    )
    assert overflowing == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width


# 7. A success message stayed after the page moved on.


def test_a_success_message_fades_after_a_few_seconds(live_server, new_page, requester):
    page = as_user(live_server, new_page, "alice", "/requests/new/")
    page.locator("textarea[name=prompt]").fill("a quiet harbour")
    page.get_by_role("button", name="Generate").click()
    message = page.locator(".messages .message")
    created = ImageRequest.objects.get()
    expect(message).to_contain_text(f"Request #{created.pk} is queued.")
    expect(message).to_have_count(0, timeout=9000)


def test_a_message_goes_when_htmx_moves_the_page_on(live_server, new_page, requester, reviewer):
    request_in_review(requester, prompt="bulk me", variants=1, real_images=False)
    page = as_user(live_server, new_page, "rita", "/review/")
    page.get_by_label("Select all on this page").check()
    page.get_by_role("button", name="Approve selected").click()
    page.wait_for_load_state()
    expect(page.locator(".messages")).to_contain_text("approved")
    page.locator("select[name=sort]").select_option("newest")
    page.wait_for_url("**sort=newest**")
    expect(page.locator(".messages .message")).to_have_count(0, timeout=2000)


# 8. A live refresh of the queue swallowed the first `j`: the keyboard cursor was lost.


def test_the_queue_keeps_the_keyboard_cursor_across_a_live_refresh(
    live_server, new_page, requester, reviewer
):
    for n in (1, 2, 3):
        request_in_review(requester, prompt=f"row {n}", variants=1, real_images=False)
    page = as_user(live_server, new_page, "rita", "/review/")
    links = page.locator(".queue-link")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(links.nth(1)).to_be_focused()
    page.evaluate(
        """() => new Promise((done) => document.addEventListener(
            "htmx:afterSettle", (event) => event.detail.target.id === "queue-rows" && done(),
        ))"""
    )
    page.wait_for_timeout(50)
    page.keyboard.press("j")
    expect(links.nth(2)).to_be_focused()


# 9. On a phone the images came after the whole parameter panel.


def test_on_a_phone_the_images_come_before_the_brief(live_server, new_page, requester, reviewer):
    item = request_in_review(requester, prompt="a phone check", variants=2, real_images=False)
    page = as_user(live_server, new_page, "rita", f"/review/{item.pk}/", width=390, height=844)
    image_top = box(page, ".output-image")["y"]
    assert image_top < box(page, "aside.brief")["y"]
    assert image_top < 844


# 10. Reference thumbnails were cropped square.


def test_reference_thumbnails_keep_their_shape(live_server, new_page, requester, reviewer):
    edit = request_in_review(requester, prompt="make it night", mode="edit", variants=1)
    page = as_user(live_server, new_page, "rita", f"/review/{edit.pk}/")
    thumbnail = page.locator(".references img").first
    expect(thumbnail).to_be_visible()
    natural = thumbnail.evaluate("(img) => img.naturalWidth / img.naturalHeight")
    shown = thumbnail.bounding_box()
    assert natural == pytest.approx(4 / 3, rel=0.02)
    assert shown["width"] / shown["height"] == pytest.approx(natural, rel=0.03)
    assert thumbnail.evaluate("(img) => getComputedStyle(img).objectFit") != "cover"


# 11. The CSV preview omitted the review-policy columns it would import.


def test_the_csv_preview_shows_the_review_policy_it_will_import(
    live_server, new_page, requester, tmp_path
):
    path = tmp_path / "batch.csv"
    path.write_text(
        "prompt,variants,required_approvals,approval_quota,auto_publish,auto_reject,due,priority\n"
        "a fox,3,2,2,yes,yes,2031-05-06,urgent\n"
        "a hare,1,,,,,,\n"
    )
    page = as_user(live_server, new_page, "alice", "/requests/batch/")
    page.set_input_files("input[name=file]", str(path))
    page.get_by_role("button", name="Check the file").click()
    headers = page.locator("table.batch-rows thead th").all_inner_texts()
    for column in (
        "Approvals per output",
        "Approved outputs needed",
        "Publishing",
        "Acceptance checks",
        "Due",
        "Priority",
    ):
        assert any(column.lower() == h.strip().lower() for h in headers), (column, headers)
    fox, hare = page.locator("table.batch-rows tbody tr").all()
    fox_cells = [cell.strip() for cell in fox.locator("td").all_inner_texts()]
    assert fox_cells[6:10] == ["2", "2", "Publish on approval", "Reject failing checks"]
    assert fox_cells[10] == "2031-05-06 23:59" and fox_cells[11] == "Urgent"
    hare_cells = [cell.strip() for cell in hare.locator("td").all_inner_texts()]
    defaults = ["1", "1", "As the site is set up", "Flag for a reviewer", "—", "Normal"]
    assert hare_cells[6:12] == defaults
