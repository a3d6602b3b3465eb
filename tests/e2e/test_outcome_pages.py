"""What a requester sees became of their outputs, in a real browser."""

import os
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from imagereview import actions
from imagereview.models import Decision, ImageRequest, Publication
from imagereview.roles import REVIEWERS
from tests.conftest import make_user
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(
    os.environ.get("SCREENSHOT_DIR", Path(__file__).parents[2] / "var" / "screenshots")
)


def outputs_of(image_request: ImageRequest) -> list:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def revised_and_decided(requester, reviewer) -> tuple[ImageRequest, ImageRequest]:
    """A first version sent back for changes, and its revision with three decided variants."""
    vic = make_user("vic", REVIEWERS)
    first = request_in_review(requester, prompt="A lighthouse on a cliff at dusk", variants=1)
    revision = request_in_review(
        requester,
        prompt="A lighthouse on a cliff at dusk, warm light in the windows, waves breaking below",
        variants=3,
        parent=first,
        revision=2,
        approval_quota=2,
        required_approvals=2,
    )
    Decision.objects.create(
        output=outputs_of(first)[0],
        reviewer=reviewer,
        verdict=Decision.Verdict.CHANGES,
        comment="Lovely mood. Warm up the windows and show the sea.",
        revision=revision,
    )
    ImageRequest.objects.filter(pk=first.pk).update(status=ImageRequest.Status.CHANGES_REQUESTED)
    chosen, melted, spare = outputs_of(revision)
    actions.decide(
        output=melted,
        reviewer=reviewer,
        verdict="reject",
        reason="artefacts",
        comment="The railing melts into the rocks on the left.",
    )
    for output in (chosen, spare):
        actions.decide(output=output, reviewer=reviewer, verdict="approve")
        actions.decide(output=output, reviewer=vic, verdict="approve")
    Publication.objects.create(
        output=chosen,
        request=revision,
        target="local",
        key=f"2025/05/{revision.pk}-v2-1-{chosen.sha256[:12]}.png",
        manifest_key=f"2025/05/{revision.pk}-v2-1-{chosen.sha256[:12]}.json",
        state=Publication.State.PUBLISHED,
        sha256=chosen.sha256,
        published_at=timezone.now(),
    )
    return first, revision


def test_a_requester_sees_verdicts_notes_publication_and_revisions(
    live_server, new_page, requester, reviewer
):
    first, revision = revised_and_decided(requester, reviewer)
    page = new_page(width=1280, height=900)
    log_in(page, live_server.url, "alice", "alice-password")
    page.goto(f"{live_server.url}/requests/{revision.pk}/")

    expect(page.locator("#standing")).to_have_text("Published")
    expect(page.locator("#parent")).to_contain_text(f"Revision of #{first.pk}")
    expect(page.locator("#requirement")).to_have_text(
        "Needs 2 approved outputs, 2 so far; each output needs 2 approvals"
    )
    outcomes = page.locator("article.outcome")
    expect(outcomes).to_have_count(3)
    expect(outcomes.nth(0).locator(".verdict-badge")).to_have_text("Approved")
    expect(outcomes.nth(0).get_by_role("link", name="Download published file")).to_be_visible()
    expect(outcomes.nth(1).locator(".verdict-badge")).to_have_text("Rejected")
    expect(outcomes.nth(1).locator(".note")).to_contain_text("Artefacts or distortions")
    expect(outcomes.nth(1).locator(".note")).to_contain_text("Rejected by a reviewer")
    expect(outcomes.nth(2)).to_contain_text("2 of 2 approvals")
    expect(page.locator("main")).not_to_contain_text("Stored")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "request-outcomes.png", full_page=True)

    page.locator("#parent").get_by_role("link").click()
    expect(page.locator("#standing")).to_have_text(f"Changes requested — revision #{revision.pk}")
    page.get_by_role("link", name=f"Revision #{revision.pk} started from this output →").click()
    expect(page).to_have_url(f"{live_server.url}/requests/{revision.pk}/")
