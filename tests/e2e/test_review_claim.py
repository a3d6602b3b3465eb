"""The claim on a review page, in a real browser: opening the page claims the request, and
leaving or closing it releases the claim at once."""

import pytest
from playwright.sync_api import expect

from imagereview.models import ImageRequest
from imagereview.roles import REVIEWERS
from tests.conftest import make_user, wait_for
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def claimant(image_request: ImageRequest) -> str | None:
    holder = ImageRequest.objects.get(pk=image_request.pk).claimed_by
    return holder.username if holder else None


def open_review(live_server, new_page, username: str, image_request: ImageRequest):
    page = new_page()
    log_in(page, live_server.url, username, f"{username}-password")
    page.goto(f"{live_server.url}/review/{image_request.pk}/")
    return page


def test_opening_the_page_claims_and_closing_it_releases(
    live_server, new_page, requester, reviewer
):
    make_user("vic", REVIEWERS)
    item = request_in_review(requester, variants=1, real_images=False)
    rita = open_review(live_server, new_page, "rita", item)
    wait_for(lambda: claimant(item) == "rita", timeout=10, message="the page did not claim")

    vic = open_review(live_server, new_page, "vic", item)
    expect(vic.locator(".claim")).to_have_text("rita is reviewing this right now.")

    rita.close()
    wait_for(lambda: claimant(item) is None, timeout=10, message="closing did not release")
    assert claimant(item) is None


def test_leaving_for_another_page_releases_the_claim(live_server, new_page, requester, reviewer):
    item = request_in_review(requester, variants=1, real_images=False)
    page = open_review(live_server, new_page, "rita", item)
    wait_for(lambda: claimant(item) == "rita", timeout=10, message="the page did not claim")
    page.goto(f"{live_server.url}/review/")
    wait_for(lambda: claimant(item) is None, timeout=10, message="leaving did not release")
