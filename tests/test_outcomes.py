"""What a requester's page says became of each output: verdicts, notes, publication, revisions."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import Asset, Generation, ImageRequest, Publication
from imagereview.queries.outcomes import request_outcome
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user
from tests.factories import publication_of, request_in_review

R = ImageRequest.Status
P = Publication.State


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def page_of(client, image_request: ImageRequest, **headers) -> str:
    response = client.get(image_request.get_absolute_url(), headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def changes(output: Asset, reviewer, comment: str = "") -> ImageRequest:
    return actions.request_changes(
        output=output,
        reviewer=reviewer,
        prompt="a lighthouse at dawn",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        comment=comment,
    )


def approved(requester, reviewer, *, variants: int = 1) -> ImageRequest:
    item = request_in_review(requester, variants=variants, real_images=False)
    actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="approve")
    item.refresh_from_db()
    assert item.status == R.APPROVED
    return item


def test_request_page_names_each_verdict_with_its_reason_and_comment(
    requester, reviewer, requester_client
):
    item = request_in_review(requester, variants=3, approval_quota=2, real_images=False)
    first, second, _third = outputs_of(item)
    actions.decide(output=first, reviewer=reviewer, verdict="approve")
    actions.decide(
        output=second,
        reviewer=reviewer,
        verdict="reject",
        reason="artefacts",
        comment="The railing melts into the rocks.",
    )
    body = page_of(requester_client, item)
    assert 'id="standing">Ready for review<' in body
    assert ">Approved<" in body
    assert ">Rejected<" in body
    assert ">Awaiting review<" in body
    assert "Artefacts or distortions" in body
    assert "“The railing melts into the rocks.”" in body
    assert "Rejected by a reviewer" in body
    assert "rita" not in body


def test_request_page_shows_a_change_request_and_closes_the_undecided(
    requester, reviewer, requester_client
):
    item = request_in_review(requester, variants=2, real_images=False)
    first, _second = outputs_of(item)
    revision = changes(first, reviewer, comment="Make it dawn, not dusk.")
    body = page_of(requester_client, item)
    assert f'id="standing">Changes requested — revision #{revision.pk}<' in body
    assert ">Changes requested<" in body
    assert "“Make it dawn, not dusk.”" in body
    assert "Changes requested by a reviewer" in body
    # The other output will never be decided: it is not "awaiting" anything.
    assert ">Review closed<" in body
    assert "Awaiting review" not in body


def test_request_page_shows_failed_and_generating_variants_in_words(requester, requester_client):
    item = ImageRequest.objects.create(requester=requester, prompt="p", variants=2)
    Generation.objects.create(
        request=item,
        variant=1,
        state=Generation.State.FAILED,
        failure_message="Invalid prompt: prompt contains prohibited content",
    )
    Generation.objects.create(request=item, variant=2, state=Generation.State.SUBMITTED)
    body = page_of(requester_client, item)
    assert "Failed: Invalid prompt: prompt contains prohibited content" in body
    assert "Generating…" in body
    assert 'id="standing">Generating<' in body


def test_request_page_counts_approvals_so_far_against_approvals_needed(
    requester, reviewer, requester_client
):
    second = make_user("vic", REVIEWERS)
    item = request_in_review(requester, variants=2, required_approvals=2, real_images=False)
    first, _ = outputs_of(item)
    actions.decide(output=first, reviewer=reviewer, verdict="approve")
    body = page_of(requester_client, item)
    assert "1 of 2 approvals" in body
    assert "0 of 2 approvals" in body
    assert "Needs 1 approved output, 0 so far; each output needs 2 approvals" in body
    actions.decide(output=first, reviewer=second, verdict="approve")
    body = page_of(requester_client, item)
    assert "2 of 2 approvals" in body
    assert 'id="standing">Approved<' in body


def test_request_page_states_the_requirement_and_the_standing(
    requester, reviewer, requester_client
):
    item = request_in_review(requester, variants=4, approval_quota=2, real_images=False)
    actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="approve")
    body = page_of(requester_client, item)
    assert "Needs 2 approved outputs, 1 so far" in body
    assert "each output needs" not in body
    assert "approved of" not in body


def test_revision_links_go_both_ways(requester, reviewer, requester_client):
    item = request_in_review(requester, variants=1, real_images=False)
    revision = changes(outputs_of(item)[0], reviewer)
    parent_page = page_of(requester_client, item)
    revision_url = reverse("request_detail", args=[revision.pk])
    assert f'<a href="{revision_url}">Revision #{revision.pk} started from this output →</a>' in (
        parent_page
    )
    assert ">Generating<" in parent_page  # the revision's own standing
    revision_page = page_of(requester_client, revision)
    parent_url = reverse("request_detail", args=[item.pk])
    assert f'Revision of <a href="{parent_url}">#{item.pk}</a>' in revision_page


def test_published_output_offers_its_download(requester, reviewer, requester_client):
    item = approved(requester, reviewer)
    publication = publication_of(outputs_of(item)[0])
    body = page_of(requester_client, item)
    assert 'id="standing">Published<' in body
    download = reverse("published_file", args=[publication.pk])
    assert f'href="{download}">Download published file</a>' in body
    assert '<strong class="target">local</strong>' in body


def test_retracted_publication_shows_its_reason_and_no_download(
    requester, reviewer, requester_client
):
    item = approved(requester, reviewer)
    publication = publication_of(
        outputs_of(item)[0],
        P.RETRACTED,
        retract_reason="The licence of a reference ran out.",
        retracted_at=timezone.now(),
    )
    body = page_of(requester_client, item)
    assert ">Retracted<" in body
    assert "Reason: The licence of a reference ran out." in body
    assert reverse("published_file", args=[publication.pk]) not in body
    assert "Download published file" not in body
    assert 'id="standing">Approved<' in body


def test_pending_publication_keeps_the_page_polling(requester, reviewer, requester_client):
    item = approved(requester, reviewer)
    publication = publication_of(outputs_of(item)[0], P.PENDING)
    fragment = page_of(requester_client, item, **{"HX-Request": "true"})
    assert fragment.lstrip().startswith('<section id="progress"')
    assert 'hx-trigger="every 2s"' in fragment
    assert ">Publishing<" in fragment
    Publication.objects.filter(pk=publication.pk).update(
        state=P.PUBLISHED, published_at=timezone.now()
    )
    fragment = page_of(requester_client, item, **{"HX-Request": "true"})
    assert "hx-trigger" not in fragment
    assert "Download published file" in fragment


def test_request_page_is_hidden_from_other_requesters(requester, reviewer):
    item = approved(requester, reviewer)
    response = client_for(make_user("mallory")).get(item.get_absolute_url())
    assert response.status_code == 404


def test_request_page_htmx_returns_the_progress_fragment(requester, requester_client):
    item = ImageRequest.objects.create(requester=requester, prompt="p", variants=1)
    Generation.objects.create(request=item, variant=1)
    fragment = page_of(requester_client, item, **{"HX-Request": "true"})
    assert fragment.lstrip().startswith('<section id="progress"')
    assert 'hx-trigger="every 2s"' in fragment
    assert "<html" not in fragment and "Variant 1" in fragment


def test_request_pages_never_show_internal_state_names(requester, reviewer, requester_client):
    item = approved(requester, reviewer, variants=2)
    body = page_of(requester_client, item)
    for internal in ("Stored", "stored", "in_review", "In review", "submitted"):
        assert internal not in body
    waiting = request_in_review(requester, variants=1, real_images=False)
    listing = requester_client.get(reverse("my_requests")).content.decode()
    assert "In review" not in listing and "Ready for review" in listing
    assert "Stored" not in page_of(requester_client, waiting)


def test_my_requests_says_published(requester, reviewer, requester_client):
    item = approved(requester, reviewer)
    publication_of(outputs_of(item)[0])
    listing = requester_client.get(reverse("my_requests")).content.decode()
    assert '<span class="badge published">Published</span>' in listing


def test_reviewers_see_reviewer_names_and_requesters_the_role(
    requester, reviewer, requester_client, reviewer_client, settings
):
    settings.MANIFEST_REVIEWER_NAMES = False
    item = request_in_review(requester, variants=2, approval_quota=2, real_images=False)
    actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="reject", reason="text")
    assert "Rejected by a reviewer" in page_of(requester_client, item)
    assert "Rejected by rita" in page_of(reviewer_client, item)
    settings.MANIFEST_REVIEWER_NAMES = True
    assert "Rejected by rita" in page_of(requester_client, item)


def test_a_reviewers_later_verdict_replaces_their_earlier_note(requester, reviewer):
    item = request_in_review(requester, variants=2, approval_quota=2, real_images=False)
    first = outputs_of(item)[0]
    actions.decide(output=first, reviewer=reviewer, verdict="reject", reason="text")
    decision = item.assets.get(pk=first.pk).decisions.get()
    actions.undo_decision(decision_id=decision.pk, reviewer=reviewer)
    actions.decide(output=first, reviewer=reviewer, verdict="approve")
    outcome = request_outcome(item, viewer=requester)
    verdict = outcome.variants[0].outputs[0]
    assert (verdict.verdict_words, verdict.notes) == ("Approved", [])
    assert outcome.approved_outputs == 1


def count_queries(client, image_request: ImageRequest) -> int:
    with CaptureQueriesContext(connection) as captured:
        page_of(client, image_request)
    return len(captured)


def decided_and_published(requester, reviewer, variants: int, **fields) -> ImageRequest:
    item = request_in_review(
        requester, variants=variants, approval_quota=1, real_images=False, **fields
    )
    *others, last = outputs_of(item)
    for output in others:
        actions.decide(
            output=output, reviewer=reviewer, verdict="reject", reason="other", comment="no"
        )
    actions.decide(output=last, reviewer=reviewer, verdict="approve", comment="yes")
    publication_of(last)
    return item


def test_request_page_queries_stay_constant_with_more_variants(
    requester, reviewer, requester_client
):
    one = decided_and_published(requester, reviewer, variants=1)
    earlier = request_in_review(requester, variants=1, real_images=False)
    four = decided_and_published(requester, reviewer, variants=4, parent=earlier)
    assert count_queries(requester_client, one) == count_queries(requester_client, four)
