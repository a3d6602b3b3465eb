"""Undo means the last thing the reviewer did: a change request says it cannot be undone, and a
bulk action is taken back whole (issue 12, part 6). The browser side is in
tests/e2e/test_review_defects.py."""

import re

import pytest
from django.urls import reverse

from imagereview import actions
from imagereview.actions.undo import undo_batch, undoable_decision
from imagereview.models import Asset, Decision, ImageRequest
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

pytestmark = pytest.mark.django_db

R = ImageRequest.Status


def item(requester, prompt: str) -> ImageRequest:
    return request_in_review(requester, prompt=prompt, variants=1, real_images=False)


def output_of(image_request: ImageRequest) -> Asset:
    return image_request.assets.get(kind=Asset.Kind.OUTPUT)


def ask_changes(image_request: ImageRequest, reviewer) -> ImageRequest:
    return actions.request_changes(
        output=output_of(image_request),
        reviewer=reviewer,
        prompt="bluer",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )


def bulk(client, *image_requests: ImageRequest, verdict: str = "approve"):
    body = {"requests": [r.pk for r in image_requests], "verdict": verdict, "filter_query": ""}
    return client.post(reverse("bulk_decide"), body)


def test_undoable_after_a_change_request_is_the_change_request(requester, reviewer):
    approved = item(requester, "approved")
    actions.decide(output=output_of(approved), reviewer=reviewer, verdict="approve")
    ask_changes(item(requester, "changed"), reviewer)
    latest = undoable_decision(reviewer)
    assert latest.verdict == Decision.Verdict.CHANGES


def test_queue_says_a_change_request_cannot_be_undone_and_offers_no_older_undo(
    requester, reviewer, reviewer_client
):
    approved = item(requester, "approved")
    actions.decide(output=output_of(approved), reviewer=reviewer, verdict="approve")
    ask_changes(item(requester, "changed"), reviewer)
    page = reviewer_client.get(reverse("review_queue")).content.decode()
    assert (
        "Your last decision (a change request) cannot be undone: the revision is submitted." in page
    )
    assert 'id="undo"' not in page


def test_bulk_decisions_share_one_batch(requester, reviewer, reviewer_client):
    first, second = item(requester, "one"), item(requester, "two")
    bulk(reviewer_client, first, second)
    batches = set(Decision.objects.values_list("batch", flat=True))
    assert len(batches) == 1 and None not in batches
    latest = undoable_decision(reviewer)
    assert latest.batch_requests == [first.pk, second.pk]


def test_toast_offers_to_undo_the_whole_bulk_action(requester, reviewer, reviewer_client):
    first, second = item(requester, "one"), item(requester, "two")
    page = bulk(reviewer_client, first, second)
    page = reviewer_client.get(page.url).content.decode()
    assert f"You approved 2 items at once (#{first.pk}, #{second.pk})." in page
    assert re.search(r'<button type="submit" id="undo">Undo all', page)


def test_one_undo_takes_back_the_bulk_action_and_returns_to_the_queue(
    requester, reviewer, reviewer_client
):
    first, second = item(requester, "one"), item(requester, "two")
    bulk(reviewer_client, first, second)
    assert set(ImageRequest.objects.values_list("status", flat=True)) == {R.APPROVED}
    decision = Decision.objects.first()
    response = reviewer_client.post(reverse("undo_decision", args=[decision.pk]) + "?sort=newest")
    assert response.status_code == 302
    assert response.url == reverse("review_queue") + "?sort=newest"
    assert set(ImageRequest.objects.values_list("status", flat=True)) == {R.IN_REVIEW}
    assert not Decision.objects.filter(undone_at__isnull=True).exists()
    page = reviewer_client.get(response.url).content.decode()
    assert f"Undone: your bulk approve of #{first.pk}, #{second.pk}." in page


def test_undoing_a_bulk_action_over_htmx_redirects_to_the_queue(
    requester, reviewer, reviewer_client
):
    first, second = item(requester, "one"), item(requester, "two")
    bulk(reviewer_client, first, second, verdict="approve")
    decision = Decision.objects.last()
    response = reviewer_client.post(
        reverse("undo_decision", args=[decision.pk]),
        {"page": str(second.pk)},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("review_queue")
    assert not Decision.objects.filter(undone_at__isnull=True).exists()


def test_another_reviewer_cannot_undo_a_bulk_action(requester, reviewer, reviewer_client):
    first, second = item(requester, "one"), item(requester, "two")
    bulk(reviewer_client, first, second)
    other = make_user("otto", "reviewers")
    decision = Decision.objects.first()
    response = client_for(other).post(reverse("undo_decision", args=[decision.pk]))
    assert response.status_code == 302
    assert not Decision.objects.filter(undone_at__isnull=False).exists()
    assert undo_batch(batch=decision.batch, reviewer=other) == ([], [])


def test_a_single_decision_still_undoes_alone(requester, reviewer, reviewer_client):
    first, second = item(requester, "one"), item(requester, "two")
    bulk(reviewer_client, first)
    single = actions.decide(output=output_of(second), reviewer=reviewer, verdict="approve")
    assert undoable_decision(reviewer).pk == single.pk
    assert undoable_decision(reviewer).batch_requests == []
    reviewer_client.post(reverse("undo_decision", args=[single.pk]))
    assert ImageRequest.objects.get(pk=second.pk).status == R.IN_REVIEW
    assert ImageRequest.objects.get(pk=first.pk).status == R.APPROVED
