"""A two-stage request decided by two groups, in a real browser."""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from imagereview.models import Decision, ImageRequest, Stage, Workflow
from imagereview.roles import REVIEWERS
from tests.conftest import make_user
from tests.e2e.conftest import log_in
from tests.factories import request_in_review

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

R = ImageRequest.Status


@pytest.fixture
def workflow(db) -> Workflow:
    creative = Group.objects.create(name="Creative")
    legal = Group.objects.create(name="Brand and legal")
    make_user("cleo", REVIEWERS, "Creative")
    make_user("lena", REVIEWERS, "Brand and legal")
    workflow = Workflow.objects.create(name="Creative, then Brand and legal")
    Stage.objects.create(workflow=workflow, position=1, name="Creative", reviewers=creative)
    Stage.objects.create(workflow=workflow, position=2, name="Brand and legal", reviewers=legal)
    return workflow


def test_two_groups_decide_a_two_stage_request(live_server, new_page, requester, workflow):
    image_request = request_in_review(
        requester,
        prompt="a lighthouse poster for the spring campaign",
        workflow=workflow,
        stage=workflow.stages.get(position=1),
    )
    queue_row = f'li.queue-item[data-request="{image_request.pk}"]'

    cleo = new_page()
    log_in(cleo, live_server.url, "cleo", "cleo-password")
    cleo.goto(f"{live_server.url}/review/")
    expect(cleo.locator(queue_row).locator(".stage-name")).to_have_text("Creative")
    cleo.locator(queue_row).locator(".queue-link").click()
    expect(cleo.locator("#stages [data-stage-state=current]")).to_contain_text("Creative")
    cleo.locator("article.output").first.get_by_role("button", name="Approve").click()
    # Creative has passed it: it leaves Cleo's queue and the page moves on by itself.
    expect(cleo).to_have_url(f"{live_server.url}/review/")
    expect(cleo.locator(queue_row)).to_have_count(0)
    expect(cleo.locator(".empty")).to_contain_text("Nothing awaits review")

    lena = new_page()
    log_in(lena, live_server.url, "lena", "lena-password")
    lena.goto(f"{live_server.url}/review/")
    expect(lena.locator(queue_row).locator(".stage-name")).to_have_text("Brand and legal")
    lena.locator(queue_row).locator(".queue-link").click()
    stages = lena.locator("#stages")
    expect(stages.locator("[data-stage-state=done]")).to_contain_text(
        "Approve of variant 1 by cleo"
    )
    expect(stages.locator("[data-stage-state=current]")).to_contain_text("Brand and legal")
    if os.environ.get("SCREENSHOT_DIR"):
        stages.screenshot(path=Path(os.environ["SCREENSHOT_DIR"]) / "stages.png")
    # Only the output Creative passed is up for decision here: variant 1.
    lena.locator("article.output").first.get_by_role("button", name="Approve").click()
    expect(lena).to_have_url(f"{live_server.url}/review/")

    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED
    decided = Decision.objects.filter(output__request=image_request).order_by("id")
    assert [(d.reviewer.username, d.stage.name) for d in decided] == [
        ("cleo", "Creative"),
        ("lena", "Brand and legal"),
    ]

    lena.goto(f"{live_server.url}/review/{image_request.pk}/")
    rows = lena.locator("#stages .stage-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Approve of variant 1 by cleo")
    expect(rows.nth(1)).to_contain_text("Approve of variant 1 by lena")
    expect(rows.nth(1)).to_have_attribute("data-stage-state", "done")
