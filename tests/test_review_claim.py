"""The claim on a review page: taken and kept alive by POSTs from the open page, released when
it closes, and never written by a GET."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import ImageRequest
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

HTMX = {"HX-Request": "true"}


@pytest.fixture
def item(requester) -> ImageRequest:
    return request_in_review(requester, variants=1, real_images=False)


def claim_of(image_request: ImageRequest) -> tuple:
    row = ImageRequest.objects.get(pk=image_request.pk)
    return row.claimed_by_id, row.claimed_at, row.updated_at


def test_a_get_of_the_review_page_writes_nothing(item, reviewer_client):
    before = claim_of(item)
    page = reviewer_client.get(reverse("review_detail", args=[item.pk]))
    assert page.status_code == 200
    assert claim_of(item) == before == (None, None, before[2])
    reviewer_client.get(reverse("review_detail", args=[item.pk]), headers=HTMX)
    assert claim_of(item) == before


def test_the_page_claims_on_load_and_renews_while_open(item, reviewer, reviewer_client):
    page = reviewer_client.get(reverse("review_detail", args=[item.pk])).content.decode()
    claim_url = reverse("claim_review", args=[item.pk])
    assert f'hx-post="{claim_url}"' in page
    assert 'hx-trigger="load, every 30s' in page
    response = reviewer_client.post(claim_url, headers=HTMX)
    assert response.status_code == 200
    claimed_by, first_claim, _ = claim_of(item)
    assert claimed_by == reviewer.pk
    reviewer_client.post(claim_url, headers=HTMX)
    assert claim_of(item)[1] > first_claim


def test_another_reviewer_sees_the_claim_on_the_page_and_in_the_heartbeat(item, reviewer):
    actions.claim(item, reviewer)
    vic = client_for(make_user("vic", REVIEWERS))
    page = vic.get(reverse("review_detail", args=[item.pk])).content.decode()
    assert "rita is reviewing this right now." in page
    heartbeat = vic.post(reverse("claim_review", args=[item.pk]), headers=HTMX)
    assert "rita is reviewing this right now." in heartbeat.content.decode()
    assert claim_of(item)[0] == reviewer.pk


def test_closing_the_page_releases_the_claim(item, reviewer, reviewer_client):
    page = reviewer_client.get(reverse("review_detail", args=[item.pk])).content.decode()
    release_url = reverse("release_review", args=[item.pk])
    assert f'data-release="{release_url}"' in page
    actions.claim(item, reviewer)
    assert reviewer_client.post(release_url).status_code == 204
    assert claim_of(item)[:2] == (None, None)


def test_a_release_leaves_someone_elses_claim_alone(item, reviewer):
    actions.claim(item, reviewer)
    vic = client_for(make_user("vic", REVIEWERS))
    vic.post(reverse("release_review", args=[item.pk]))
    assert claim_of(item)[0] == reviewer.pk


def test_the_release_needs_the_csrf_token(item, reviewer):
    client = client_for(reviewer)
    client.handler.enforce_csrf_checks = True
    actions.claim(item, reviewer)
    assert client.post(reverse("release_review", args=[item.pk])).status_code == 403
    assert claim_of(item)[0] == reviewer.pk


def test_a_claim_without_a_heartbeat_ends_soon(item, reviewer):
    vic = make_user("vic", REVIEWERS)
    actions.claim(item, reviewer)
    item.refresh_from_db()
    assert actions.claims.other_claimant(item, vic) == reviewer
    silent = timezone.now() - timedelta(seconds=3 * 30 + 1)
    ImageRequest.objects.filter(pk=item.pk).update(claimed_at=silent)
    item.refresh_from_db()
    assert actions.claims.other_claimant(item, vic) is None


def test_the_heartbeat_stops_once_the_request_is_decided(item, reviewer, reviewer_client):
    actions.decide(output=item.assets.get(kind="output"), reviewer=reviewer, verdict="approve")
    response = reviewer_client.post(reverse("claim_review", args=[item.pk]), headers=HTMX)
    assert response.status_code == 286
    assert claim_of(item)[:2] == (None, None)


def test_claims_are_for_reviewers(item, requester_client):
    assert requester_client.post(reverse("claim_review", args=[item.pk])).status_code == 403
    assert requester_client.post(reverse("release_review", args=[item.pk])).status_code == 403
    assert claim_of(item)[:2] == (None, None)
