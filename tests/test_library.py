"""The library: every request a person may see, its outputs' verdicts and publications, with
filters, search, keyset pages and the bulk publish action."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import Asset, Decision, ImageRequest, Publication
from imagereview.queries.library import export_outputs, library_page
from imagereview.queries.pages import decode_cursor, encode_cursor
from imagereview.roles import REQUESTERS, REVIEWERS
from imagereview.verdicts import counting_rows, standings
from tests.conftest import client_for, make_user
from tests.factories import publication_of, request_in_review

R = ImageRequest.Status
P = Publication.State
LIBRARY = "/library/"


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def in_review(requester, prompt: str = "a lighthouse at dusk", **fields) -> ImageRequest:
    return request_in_review(requester, prompt=prompt, real_images=False, **fields)


def approve(output: Asset, reviewer) -> Decision:
    return actions.decide(output=output, reviewer=reviewer, verdict="approve")


def reject(output: Asset, reviewer) -> Decision:
    return actions.decide(output=output, reviewer=reviewer, verdict="reject", reason="artefacts")


def listed(client, **params) -> list[int]:
    response = client.get(LIBRARY, params)
    assert response.status_code == 200
    return [row.image_request.pk for row in response.context["rows"]]


@pytest.fixture
def mixed(requester, reviewer) -> dict[str, ImageRequest]:
    """One request in each state the library tells apart."""
    waiting = in_review(requester, prompt="three lemons on a marble table")
    decided = in_review(requester, prompt="a fox in fresh snow", approval_quota=1)
    first, second = outputs_of(decided)
    reject(second, reviewer)
    approve(first, reviewer)
    published = in_review(requester, prompt="a tram crossing a bridge", variants=1)
    approve(outputs_of(published)[0], reviewer)
    publication_of(outputs_of(published)[0])
    failed = ImageRequest.objects.create(
        requester=requester, prompt="a paper boat", status=R.FAILED, mode="edit"
    )
    return {"waiting": waiting, "decided": decided, "published": published, "failed": failed}


def test_library_shows_each_output_verdict_in_plain_words(mixed, reviewer_client):
    response = reviewer_client.get(LIBRARY)
    assert response.status_code == 200
    body = response.content.decode()
    for words in ("Awaiting review", "Approved", "Rejected", "Published", "Failed"):
        assert f">{words}<" in body, words
    assert [row.image_request.pk for row in response.context["rows"]] == [
        mixed[name].pk for name in ("failed", "published", "decided", "waiting")
    ]
    decided = next(r for r in response.context["rows"] if r.image_request == mixed["decided"])
    assert [(o.verdict_words, o.approvals) for o in decided.outputs] == [
        ("Approved", 1),
        ("Rejected", 0),
    ]
    assert "a fox in fresh snow" in body
    assert '<span class="badge in_review">Ready for review</span>' in body


def test_library_is_in_the_navigation_for_everyone(requester_client):
    body = requester_client.get(reverse("my_requests")).content.decode()
    assert f'href="{LIBRARY}"' in body
    assert ">Library</a>" in body


def test_library_needs_a_login(client, db):
    response = client.get(LIBRARY)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_a_requester_sees_only_their_own_requests(mixed, requester, reviewer):
    bob = make_user("bob", REQUESTERS)
    bobs = in_review(bob, prompt="bob's own lighthouse")
    bob_client = client_for(bob)
    assert listed(bob_client) == [bobs.pk]
    assert listed(bob_client, requester="alice") == []
    assert listed(bob_client, q="fox") == []
    assert listed(client_for(requester)) == [
        mixed[name].pk for name in ("failed", "published", "decided", "waiting")
    ]
    body = bob_client.get(LIBRARY).content.decode()
    assert "fresh snow" not in body
    assert 'placeholder="Requester"' not in body


def test_library_filters_swap_only_the_results_for_htmx(mixed, reviewer_client):
    response = reviewer_client.get(LIBRARY, {"state": "approved"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results">')
    assert "<html" not in body
    assert 'name="state" value="approved"' in body
    assert f'value="{mixed["decided"].pk}"' in body
    assert f'value="{mixed["waiting"].pk}"' not in body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "in_review"}, ["waiting"]),
        ({"state": "approved"}, ["published", "decided"]),
        ({"state": "published"}, ["published"]),
        ({"state": "failed"}, ["failed"]),
        ({"published": "yes"}, ["published"]),
        ({"published": "no"}, ["failed", "decided", "waiting"]),
        ({"mode": "edit"}, ["failed"]),
        ({"requester": "alice", "state": "approved"}, ["published", "decided"]),
        ({"requester": "nobody"}, []),
        ({"q": "LEMONS"}, ["waiting"]),
        ({"q": "fres"}, ["decided"]),
        ({"q": "tram bridge"}, ["published"]),
    ],
)
def test_library_filters(mixed, reviewer_client, params, expected):
    assert listed(reviewer_client, **params) == [mixed[name].pk for name in expected]


def test_library_filters_by_creation_date(mixed, reviewer_client):
    today = timezone.localdate()
    old = mixed["waiting"]
    ImageRequest.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    ten_days_ago = (today - dt.timedelta(days=10)).isoformat()
    assert listed(reviewer_client, created_to=ten_days_ago) == [old.pk]
    assert old.pk not in listed(reviewer_client, created_from=today.isoformat())
    assert listed(reviewer_client, created_from=ten_days_ago, created_to=ten_days_ago) == [old.pk]


def test_library_ignores_a_bad_filter_and_says_so(mixed, reviewer_client):
    response = reviewer_client.get(
        LIBRARY, {"created_from": "2025-02-10", "created_to": "2025-02-01", "state": "failed"}
    )
    assert [row.image_request for row in response.context["rows"]] == [mixed["failed"]]
    assert "The end date is before the start date." in response.content.decode()


def test_library_pages_by_keyset(requester, reviewer_client):
    items = [
        ImageRequest.objects.create(requester=requester, prompt=f"prompt {n}") for n in range(30)
    ]
    newest_first = [item.pk for item in reversed(items)]
    first = reviewer_client.get(LIBRARY)
    assert [row.image_request.pk for row in first.context["rows"]] == newest_first[:24]
    cursor = first.context["next_cursor"]
    assert f"after={cursor}" in first.content.decode()
    assert "Next page →" in first.content.decode()
    second = reviewer_client.get(LIBRARY, {"after": cursor})
    assert [row.image_request.pk for row in second.context["rows"]] == newest_first[24:]
    assert second.context["next_cursor"] == ""
    assert "← First page" in second.content.decode()
    # A cursor that is not one starts from the beginning.
    assert listed(reviewer_client, after="not-a-cursor") == newest_first[:24]


def test_cursors_round_trip_any_key(requester):
    item = ImageRequest.objects.create(requester=requester, prompt="x")
    assert decode_cursor(encode_cursor(item), ImageRequest) == (item.created_at, item.pk)
    assert decode_cursor(encode_cursor(item, ("id",)), ImageRequest, ("id",)) == (item.pk,)
    assert decode_cursor(encode_cursor(item), ImageRequest, ("id",)) is None


def count_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(LIBRARY).status_code == 200
    return len(queries)


def test_a_library_page_takes_the_same_queries_for_5_and_30_requests(
    requester, reviewer, reviewer_client
):
    def add(count: int) -> None:
        for n in range(count):
            item = in_review(requester, prompt=f"prompt {n}", approval_quota=2)
            first, second = outputs_of(item)
            approve(first, reviewer)
            if n % 2:
                reject(second, reviewer)
                publication_of(first)

    add(5)
    few = count_queries(reviewer_client)
    add(25)
    many = count_queries(reviewer_client)
    assert 0 < few == many
    assert len(reviewer_client.get(LIBRARY).context["rows"]) == 24


def test_library_page_names_publication_states(requester, reviewer):
    item = in_review(requester, variants=3, approval_quota=3)
    first, second, third = outputs_of(item)
    for output in (first, second, third):
        approve(output, reviewer)
    publication_of(first, P.PUBLISHED)
    publication_of(second, P.FAILED)
    retracted = publication_of(third, P.RETRACTED)
    Publication.objects.create(
        output=third,
        request=item,
        target="s3",
        key=retracted.key,
        manifest_key="m",
        state=P.PENDING,
    )
    (row,) = library_page(viewer=reviewer, filters={}).rows
    assert [o.publication_words for o in row.outputs] == [
        "Published",
        "Publishing failed",
        "Publishing",
    ]
    assert row.approved_outputs == 3


def test_an_output_without_a_verdict_on_a_closed_request_is_not_awaiting_review(
    requester, reviewer
):
    item = in_review(requester, approval_quota=1)
    approve(outputs_of(item)[0], reviewer)
    (row,) = library_page(viewer=reviewer, filters={}).rows
    assert [o.verdict_words for o in row.outputs] == ["Approved", "Review closed"]


def test_export_outputs_agree_with_the_standings(requester, reviewer):
    rachel = make_user("rachel", REVIEWERS)
    item = in_review(requester, variants=4, required_approvals=2, approval_quota=4)
    once, twice, vetoed, undone = outputs_of(item)
    changed_mind = outputs_of(in_review(requester, variants=1))[0]
    by_rules = outputs_of(in_review(requester, variants=1, required_approvals=0))[0]
    for output, reviewer_, verdict in [
        (once, reviewer, "approve"),
        (twice, reviewer, "approve"),
        (twice, rachel, "approve"),
        (vetoed, reviewer, "approve"),
        (vetoed, rachel, "reject"),
        (undone, reviewer, "approve"),
        (undone, rachel, "approve"),
        (changed_mind, reviewer, "reject"),
        (changed_mind, reviewer, "approve"),
        (by_rules, None, "reject"),
    ]:
        Decision.objects.create(output=output, reviewer=reviewer_, verdict=verdict)
    Decision.objects.filter(output=undone, reviewer=rachel).update(undone_at=timezone.now())

    chosen = set(export_outputs(viewer=reviewer).values_list("pk", flat=True))
    assert chosen == {twice.pk, changed_mind.pk}
    every = Asset.objects.filter(kind="output").select_related("request")
    tallies = standings(counting_rows(output__in=every))
    assert chosen == {
        o.pk
        for o in every
        if o.pk in tallies and tallies[o.pk].approved(o.request.required_approvals)
    }


def test_queue_counts_link_to_the_library(mixed, reviewer_client):
    body = reviewer_client.get(reverse("review_queue")).content.decode()
    for status in ("in_review", "approved", "changes_requested", "failed"):
        assert f'href="{LIBRARY}?state={status}"' in body


def test_bulk_publish_publishes_approved_outputs_and_reports_per_request(
    mixed, reviewer_client, enqueued
):
    chosen = [mixed["decided"].pk, mixed["waiting"].pk, mixed["published"].pk]
    response = reviewer_client.post(
        reverse("library_publish"), {"requests": chosen, "state": "approved"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIBRARY}?state=approved"
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert f"#{mixed['decided'].pk}: 1 output on the way to publishing." in said
    assert f"#{mixed['waiting'].pk}: no approved outputs to publish." in said
    assert f"#{mixed['published'].pk}: 1 output published already." in said
    (new,) = Publication.objects.filter(request=mixed["decided"])
    assert new.state == P.PENDING
    assert new.output == outputs_of(mixed["decided"])[0]


def test_bulk_publish_with_nothing_selected_says_so(reviewer_client, db):
    response = reviewer_client.post(reverse("library_publish"), {})
    assert response.status_code == 302
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == ["Select the requests whose approved outputs to publish."]


def test_requesters_cannot_bulk_publish(mixed, requester_client):
    response = requester_client.post(
        reverse("library_publish"), {"requests": [mixed["decided"].pk]}
    )
    assert response.status_code == 403
    assert not Publication.objects.filter(request=mixed["decided"]).exists()
    assert (
        "Publish approved outputs of selected" not in requester_client.get(LIBRARY).content.decode()
    )


@pytest.mark.parametrize("name", ["library_export", "library_publish"])
def test_library_posts_without_a_csrf_token_are_refused(mixed, reviewer, name):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(reverse(name), {"requests": [mixed["decided"].pk]})
    assert response.status_code == 403
    assert b"CSRF" in response.content
