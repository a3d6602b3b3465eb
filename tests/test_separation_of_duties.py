"""Separation of duties: with self-approval forbidden, nobody gives any verdict on their own
request (approve, reject or request changes), from the page, the bulk form or the API."""

import pytest
from django.urls import reverse

from imagereview import actions
from imagereview.models import Decision, ImageRequest
from imagereview.roles import REVIEWERS
from tests.api_support import token_client
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

R = ImageRequest.Status
CHANGES = {
    "prompt": "a lighthouse at dawn",
    "aspect_ratio": "1:1",
    "resolution": "1K",
    "output_format": "png",
    "variants": 1,
}
VERDICTS = [
    ("decide", {"verdict": "approve"}),
    ("decide", {"verdict": "reject", "reason": "artefacts"}),
    ("request_changes", CHANGES),
]


@pytest.fixture
def sam(db):
    """A reviewer who also asks for images."""
    return make_user("sam", REVIEWERS)


@pytest.fixture
def own(sam) -> ImageRequest:
    return request_in_review(sam, variants=1, real_images=False)


def first_output(image_request: ImageRequest):
    return image_request.assets.get(kind="output")


def assert_untouched(image_request: ImageRequest) -> None:
    assert not Decision.objects.exists()
    assert ImageRequest.objects.get(pk=image_request.pk).status == R.IN_REVIEW
    assert not ImageRequest.objects.filter(parent=image_request).exists()


@pytest.mark.parametrize(("view", "data"), VERDICTS)
def test_the_page_refuses_every_verdict_on_ones_own_request(sam, own, view, data):
    url = reverse(view, args=[first_output(own).pk])
    response = client_for(sam).post(url, data, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "someone else has to review it" in response.content.decode()
    assert_untouched(own)


@pytest.mark.parametrize("data", [{"verdict": "approve"}, {"verdict": "reject", "reason": "other"}])
def test_the_bulk_form_refuses_every_verdict_on_ones_own_request(sam, own, data):
    response = client_for(sam).post(
        reverse("bulk_decide"), {**data, "requests": [own.pk], "seen_decision_id": 0}, follow=True
    )
    assert f"#{own.pk}: You asked for this image" in response.content.decode()
    assert_untouched(own)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("decision", {"verdict": "approve"}),
        ("decision", {"verdict": "reject", "reason": "artefacts"}),
        ("changes", {"prompt": "a lighthouse at dawn"}),
    ],
)
def test_the_api_refuses_every_verdict_on_ones_own_request(sam, own, path, data):
    url = f"/api/v1/outputs/{first_output(own).pk}/{path}"
    response = token_client(sam).post(url, data, content_type="application/json")
    assert response.status_code == 403
    assert "someone else has to review it" in response.json()["detail"]
    assert_untouched(own)


def test_the_review_page_of_ones_own_request_shows_no_verdict_buttons(sam, own):
    body = client_for(sam).get(reverse("review_detail", args=[own.pk])).content.decode()
    assert "someone else has to review it" in body
    assert 'name="verdict"' not in body
    assert reverse("request_changes", args=[first_output(own).pk]) not in body


def test_the_queue_offers_no_bulk_selection_of_ones_own_request(sam, own, requester):
    theirs = request_in_review(requester, variants=1, real_images=False)
    body = client_for(sam).get(reverse("review_queue")).content.decode()
    assert f'name="requests" value="{theirs.pk}"' in body
    assert f'name="requests" value="{own.pk}"' not in body
    assert f"#{own.pk} is your own request" in body


def test_others_review_the_request_as_usual(sam, own, reviewer):
    body = client_for(reviewer).get(reverse("review_detail", args=[own.pk])).content.decode()
    assert 'name="verdict" value="reject"' in body
    actions.decide(
        output=first_output(own), reviewer=reviewer, verdict="reject", reason="artefacts"
    )
    assert ImageRequest.objects.get(pk=own.pk).status == R.REJECTED


def test_with_the_setting_off_one_may_review_ones_own_request(sam, own, settings):
    settings.REVIEW_FORBID_SELF_APPROVAL = False
    body = client_for(sam).get(reverse("review_detail", args=[own.pk])).content.decode()
    assert 'name="verdict" value="approve"' in body
    actions.decide(output=first_output(own), reviewer=sam, verdict="reject", reason="artefacts")
    assert ImageRequest.objects.get(pk=own.pk).status == R.REJECTED
