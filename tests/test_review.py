"""Reviewers' pages: the queue, the review page and decisions."""

import re

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from imagereview.models import Asset, Decision, Generation, ImageRequest
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

R = ImageRequest.Status


@pytest.fixture
def awaiting(requester) -> ImageRequest:
    """A request in review with two stored outputs."""
    image_request = ImageRequest.objects.create(
        requester=requester,
        prompt="a teapot <b>shaped</b> like a whale",
        variants=2,
        status=R.IN_REVIEW,
    )
    for variant in (1, 2):
        generation = Generation.objects.create(
            request=image_request,
            variant=variant,
            state=Generation.State.STORED,
            provider_task_id=f"task_{image_request.pk}_{variant}",
        )
        asset = Asset(
            kind=Asset.Kind.OUTPUT,
            request=image_request,
            generation=generation,
            index=0,
            sha256=f"{variant:064d}",
            bytes=3,
            width=1024,
            height=1024,
            content_type="image/png",
        )
        asset.file.save("output.png", ContentFile(b"png"), save=False)
        asset.thumbnail.save("thumbnail.jpg", ContentFile(b"jpg"), save=False)
        asset.save()
    return image_request


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def test_queue_lists_requests_awaiting_review(reviewer_client, awaiting, requester):
    ImageRequest.objects.create(requester=requester, prompt="still generating")
    response = reviewer_client.get(reverse("review_queue"))
    assert response.status_code == 200
    assert [r.pk for r in response.context["image_requests"]] == [awaiting.pk]
    assert {c.status: c.count for c in response.context["counts"]}["generating"] == 1


def test_queue_is_for_reviewers_only(requester_client):
    assert requester_client.get(reverse("review_queue")).status_code == 403


def test_queue_htmx_returns_the_fragment(reviewer_client, awaiting):
    response = reviewer_client.get(reverse("review_queue"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="queue"')
    assert "<html" not in body
    assert '<ul class="counts" id="counts" hx-swap-oob="true">' in body
    assert f'id="select-{awaiting.pk}" hx-preserve' in body


def test_review_page_shows_prompt_parameters_and_outputs(reviewer_client, awaiting):
    response = reviewer_client.get(reverse("review_detail", args=[awaiting.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "a teapot &lt;b&gt;shaped&lt;/b&gt; like a whale" in body
    for output in outputs_of(awaiting):
        assert reverse("asset_file", args=[output.pk, "file"]) in body
    assert "1024×1024" in body


def test_review_page_is_for_reviewers_only(requester_client, awaiting):
    response = requester_client.get(reverse("review_detail", args=[awaiting.pk]))
    assert response.status_code == 403


def test_approve_records_who_and_when(reviewer_client, reviewer, awaiting):
    first, second = outputs_of(awaiting)
    response = reviewer_client.post(reverse("decide", args=[first.pk]), {"verdict": "approve"})
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert (decision.output, decision.reviewer, decision.verdict) == (first, reviewer, "approve")
    assert decision.created_at is not None
    awaiting.refresh_from_db()
    assert awaiting.status == R.APPROVED  # one approved output meets the default quota


def test_all_rejected_rejects_the_request(reviewer_client, awaiting):
    for output in outputs_of(awaiting):
        reviewer_client.post(
            reverse("decide", args=[output.pk]),
            {"verdict": "reject", "reason": "prompt", "comment": "no whale"},
        )
    awaiting.refresh_from_db()
    assert awaiting.status == R.REJECTED
    assert set(Decision.objects.values_list("comment", flat=True)) == {"no whale"}


def test_decision_htmx_returns_the_review_body(reviewer_client, awaiting):
    ImageRequest.objects.filter(pk=awaiting.pk).update(approval_quota=2)
    output = outputs_of(awaiting)[0]
    response = reviewer_client.post(
        reverse("decide", args=[output.pk]), {"verdict": "approve"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="review-body"')
    assert "Verdict: <strong>Approve</strong>" in body


def test_reject_without_reason_is_refused_with_a_message(reviewer_client, awaiting):
    output = outputs_of(awaiting)[0]
    response = reviewer_client.post(
        reverse("decide", args=[output.pk]), {"verdict": "reject"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "Pick a reason for the reject." in response.content.decode()
    assert not Decision.objects.exists()


def test_decision_on_a_request_not_in_review_is_refused(reviewer_client, awaiting):
    ImageRequest.objects.filter(pk=awaiting.pk).update(status=R.APPROVED)
    output = outputs_of(awaiting)[0]
    response = reviewer_client.post(
        reverse("decide", args=[output.pk]), {"verdict": "approve"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "not awaiting review" in response.content.decode()


def test_requesters_cannot_decide(requester_client, awaiting):
    output = outputs_of(awaiting)[0]
    response = requester_client.post(reverse("decide", args=[output.pk]), {"verdict": "approve"})
    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_decide_rejects_get(reviewer_client, awaiting):
    output = outputs_of(awaiting)[0]
    assert reviewer_client.get(reverse("decide", args=[output.pk])).status_code == 405


def test_asset_files_are_served_to_owner_and_reviewers_only(awaiting, requester, reviewer):
    output = outputs_of(awaiting)[0]
    url = reverse("asset_file", args=[output.pk, "file"])
    assert b"".join(client_for(requester).get(url).streaming_content) == b"png"
    assert client_for(reviewer).get(url).status_code == 200
    assert client_for(make_user("eve")).get(url).status_code == 404


def test_the_deciding_decision_opens_the_next_item(reviewer_client, awaiting, requester):
    later = request_in_review(requester, prompt="next", real_images=False)
    output = outputs_of(awaiting)[0]
    response = reviewer_client.post(
        reverse("decide", args=[output.pk]), {"verdict": "approve"}, headers={"HX-Request": "true"}
    )
    assert response["HX-Redirect"] == reverse("review_detail", args=[later.pk])


@pytest.mark.parametrize("forbidden", [True, False])
def test_the_verdict_buttons_follow_the_self_approval_setting(settings, db, forbidden):
    settings.REVIEW_FORBID_SELF_APPROVAL = forbidden
    maker = make_user("sam", REVIEWERS)
    own = request_in_review(maker, variants=1, real_images=False)
    body = client_for(maker).get(reverse("review_detail", args=[own.pk])).content.decode()
    approve = re.search(r'<button type="submit" name="verdict" value="approve"[^>]*>', body)
    assert (approve is None) == forbidden
    assert ("someone else has to review it" in body) == forbidden


def test_an_approval_drops_a_reason_left_selected(reviewer_client, awaiting):
    output = outputs_of(awaiting)[0]
    reviewer_client.post(
        reverse("decide", args=[output.pk]), {"verdict": "approve", "reason": "unsafe"}
    )
    assert Decision.objects.get().reason == ""
