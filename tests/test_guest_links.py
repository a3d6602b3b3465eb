"""Guest links: shared, opened without an account, rate limited, revoked at once."""

import re
from datetime import timedelta

import jsonschema
import pytest
from django.contrib.auth.models import Group
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imagereview.actions import guests
from imagereview.actions.review import DecisionRefused, decide
from imagereview.models import (
    Annotation,
    Asset,
    Decision,
    Event,
    GuestLink,
    ImageRequest,
    Stage,
    Workflow,
)
from imagereview.publishing import manifest
from imagereview.queries import library
from imagereview.roles import REVIEWERS
from imagereview.verdicts import counting_rows, standings
from tests.api_support import token_client
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

pytestmark = pytest.mark.django_db

R = ImageRequest.Status
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def shared(requester) -> ImageRequest:
    return request_in_review(requester, real_images=False, mode=ImageRequest.Mode.EDIT)


@pytest.fixture
def other(requester) -> ImageRequest:
    return request_in_review(requester, prompt="a secret", real_images=False)


def link_for(reviewer, *requests, **fields) -> GuestLink:
    return guests.share_requests(requests=requests, created_by=reviewer, **fields)


def path_of(link: GuestLink) -> str:
    return reverse("guest_home", args=[guests.guest_token(link)])


def guest(link: GuestLink, name: str = "Gemma") -> Client:
    """A browser with no account that opened the link and gave its name."""
    client = Client()
    response = client.post(path_of(link), {"name": name})
    assert response.status_code == 302
    return client


def guest_paths(link: GuestLink, request_id: int) -> str:
    return reverse("guest_request", args=[guests.guest_token(link), request_id])


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("id"))


# Sharing and revoking: reviewers only ------------------------------------------------------


def test_share_from_review_page_shows_the_url_once(reviewer_client, shared):
    page = reviewer_client.get(reverse("review_detail", args=[shared.pk]))
    assert b'id="share-panel"' in page.content

    response = reviewer_client.post(
        reverse("share_with_guest"),
        {"requests": [shared.pk], "label": "Acme", "expires_in_days": 3, "may_decide": "on"},
        **HTMX,
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    link = GuestLink.objects.get()
    assert list(link.requests.all()) == [shared]
    assert (link.label, link.may_comment, link.may_decide) == ("Acme", False, True)
    assert abs(link.expires_at - timezone.now() - timedelta(days=3)) < timedelta(minutes=1)
    assert f'value="http://testserver{path_of(link)}"'.encode() in response.content
    assert b"<html" not in response.content  # the panel alone
    listing = reviewer_client.get(reverse("guest_links"))
    assert guests.guest_token(link).encode() not in listing.content
    assert Event.objects.filter(request=shared, subject="guest_link", to_state="shared").exists()


def test_share_selected_from_queue_prepares_then_creates_one_link(reviewer_client, shared, other):
    prepared = reviewer_client.post(
        reverse("share_with_guest"), {"requests": [shared.pk, other.pk], "prepare": "1"}
    )
    assert prepared.status_code == 200
    assert f'name="requests" value="{other.pk}"'.encode() in prepared.content
    assert not GuestLink.objects.exists()

    created = reviewer_client.post(
        reverse("share_with_guest"),
        {"requests": [shared.pk, other.pk], "expires_in_days": 7, "may_comment": "on"},
    )

    assert created.status_code == 200
    link = GuestLink.objects.get()
    assert set(link.requests.all()) == {shared, other}
    assert path_of(link).encode() in created.content


def test_queue_offers_share_selected(reviewer_client, shared):
    page = reviewer_client.get(reverse("review_queue"))
    assert f'formaction="{reverse("share_with_guest")}"'.encode() in page.content


def test_share_refuses_a_requester_without_the_reviewer_role(requester_client, shared):
    response = requester_client.post(
        reverse("share_with_guest"), {"requests": [shared.pk], "expires_in_days": 7}
    )
    assert response.status_code == 403
    assert requester_client.get(reverse("guest_links")).status_code == 403
    assert not GuestLink.objects.exists()


def test_share_refuses_ones_own_request_and_too_long_a_life(reviewer, settings):
    own = request_in_review(reviewer, real_images=False)
    with pytest.raises(guests.ShareRefused, match="You asked for"):
        link_for(reviewer, own)
    with pytest.raises(guests.ShareRefused, match="30 days"):
        link_for(
            reviewer,
            request_in_review(make_user("bo"), real_images=False),
            expires_in=timedelta(days=31),
        )


def test_share_form_error_is_shown_in_the_panel(reviewer_client, shared):
    response = reviewer_client.post(
        reverse("share_with_guest"), {"requests": [shared.pk], "expires_in_days": 90}, **HTMX
    )
    assert response.status_code == 422
    assert b"less than or equal to 30" in response.content
    assert not GuestLink.objects.exists()


def test_revoke_by_htmx_swaps_the_row(reviewer, reviewer_client, shared):
    link = link_for(reviewer, shared)
    response = reviewer_client.post(reverse("revoke_guest_link", args=[link.pk]), **HTMX)
    assert response.status_code == 200
    assert f'id="guest-link-{link.pk}"'.encode() in response.content
    assert b"Revoked" in response.content
    link.refresh_from_db()
    assert link.revoked_at is not None and link.revoked_by == reviewer


def test_revoke_without_htmx_redirects_to_the_list(reviewer, reviewer_client, shared):
    link = link_for(reviewer, shared)
    response = reviewer_client.post(reverse("revoke_guest_link", args=[link.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("guest_links")


def test_revoke_refuses_a_requester(requester_client, reviewer, shared):
    link = link_for(reviewer, shared)
    response = requester_client.post(reverse("revoke_guest_link", args=[link.pk]))
    assert response.status_code == 403
    link.refresh_from_db()
    assert link.revoked_at is None


# Opening a link ------------------------------------------------------------------------------


def test_guest_gives_a_name_then_sees_only_the_shared_requests(reviewer, shared, other):
    link = link_for(reviewer, shared)
    client = Client()
    first = client.get(path_of(link))
    assert first.status_code == 200
    assert b"Your name" in first.content
    assert first["Referrer-Policy"] == "same-origin"

    client.post(path_of(link), {"name": "Gemma"})
    home = client.get(path_of(link))

    assert f"#{shared.pk}".encode() in home.content
    assert b"a secret" not in home.content
    assert b"Gemma" in home.content
    assert b"/review/" not in home.content  # no way into the staff pages
    link.refresh_from_db()
    assert link.uses == 3 and link.last_used_at is not None


def test_guest_name_is_required(reviewer, shared):
    link = link_for(reviewer, shared)
    response = Client().post(path_of(link), {"name": " "})
    assert response.status_code == 400
    assert b"Give your name" in response.content


def test_guest_request_page_shows_prompt_outputs_and_references(reviewer, shared):
    link = link_for(reviewer, shared)
    page = guest(link).get(guest_paths(link, shared.pk))
    assert page.status_code == 200
    assert shared.prompt.encode() in page.content
    token = guests.guest_token(link)
    for asset in shared.assets.all():
        assert reverse("guest_file", args=[token, asset.pk, "thumb"]).encode() in page.content or (
            reverse("guest_file", args=[token, asset.pk, "preview"]).encode() in page.content
        )
    assert b'hx-post="' in page.content  # the comment form


def test_guest_request_page_asks_for_a_name_first(reviewer, shared):
    link = link_for(reviewer, shared)
    response = Client().get(guest_paths(link, shared.pk))
    assert response.status_code == 302
    assert response["Location"].startswith(path_of(link) + "?next=")


def test_tampered_token_is_not_a_link(reviewer, shared):
    link = link_for(reviewer, shared)
    token = guests.guest_token(link)
    forged = signing.Signer(salt="guest-link").sign_object([link.pk, "not-the-secret"])
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), forged, "nonsense"):
        response = Client().get(reverse("guest_home", args=[bad]))
        assert response.status_code == 404
        assert b"This link does not work" in response.content
    signed_elsewhere = signing.Signer(salt="other").sign_object([link.pk, link.secret])
    assert Client().get(reverse("guest_home", args=[signed_elsewhere])).status_code == 404


def test_expired_link_says_so(reviewer, shared):
    link = link_for(reviewer, shared)
    GuestLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get(path_of(link))
    assert response.status_code == 410
    assert b"This link has expired" in response.content


def test_revocation_takes_effect_at_once(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=True)
    client = guest(link)
    output = outputs_of(shared)[0]
    assert client.get(guest_paths(link, shared.pk)).status_code == 200

    guests.revoke(link=link, by=reviewer)

    page = client.get(guest_paths(link, shared.pk))
    assert page.status_code == 410
    assert b"This link was revoked" in page.content
    token = guests.guest_token(link)
    assert client.get(reverse("guest_file", args=[token, output.pk, "file"])).status_code == 410
    decided = client.post(
        reverse("guest_decide", args=[token, output.pk]), {"verdict": "approve"}, **HTMX
    )
    assert decided.status_code == 200 and decided["HX-Refresh"] == "true"
    assert not Decision.objects.exists()


def test_other_requests_are_404_like_nonexistent_ones(reviewer, shared, other):
    link = link_for(reviewer, shared)
    client = guest(link)
    hidden = client.get(guest_paths(link, other.pk))
    missing = client.get(guest_paths(link, 999_999))
    assert hidden.status_code == missing.status_code == 404

    def page(response) -> str:
        return re.sub(r'"X-CSRFToken": "\w+"', "", response.content.decode())

    assert page(hidden).replace(f"/{other.pk}/", "/999999/") == page(missing)


def test_assets_of_other_requests_are_404(reviewer, shared, other):
    link = link_for(reviewer, shared)
    client = guest(link)
    token = guests.guest_token(link)
    mine = outputs_of(shared)[0]
    theirs = outputs_of(other)[0]
    assert client.get(reverse("guest_file", args=[token, mine.pk, "file"])).status_code == 200
    assert client.get(reverse("guest_file", args=[token, mine.pk, "thumb"])).status_code == 200
    # No preview stored: the file stands in.
    assert client.get(reverse("guest_file", args=[token, mine.pk, "preview"])).status_code == 200
    assert client.get(reverse("guest_file", args=[token, theirs.pk, "file"])).status_code == 404
    assert client.get(reverse("guest_file", args=[token, mine.pk, "secret"])).status_code == 404
    assert (
        client.post(
            reverse("guest_decide", args=[token, theirs.pk]), {"verdict": "approve"}
        ).status_code
        == 404
    )


def test_guest_without_a_session_name_cannot_reach_staff_pages(reviewer, shared):
    link = link_for(reviewer, shared)
    client = guest(link)
    for url in (reverse("review_queue"), reverse("review_detail", args=[shared.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    file_url = reverse("asset_file", args=[outputs_of(shared)[0].pk, "file"])
    assert "/login/" in client.get(file_url)["Location"]


# Deciding and commenting ---------------------------------------------------------------------


def test_guest_approval_counts_and_is_named_in_the_history(reviewer, reviewer_client, shared):
    link = link_for(reviewer, shared, may_decide=True)
    client = guest(link, "Gemma Guest")
    output = outputs_of(shared)[0]
    token = guests.guest_token(link)

    response = client.post(
        reverse("guest_decide", args=[token, output.pk]),
        {"verdict": "approve", "comment": "lovely", "seen_decision_id": 0},
        **HTMX,
    )

    assert response.status_code == 200
    assert b'id="guest-body"' in response.content
    assert b"by you" in response.content
    decision = Decision.objects.get()
    assert (decision.reviewer, decision.guest_link, decision.guest_name) == (
        None,
        link,
        "Gemma Guest",
    )
    shared.refresh_from_db()
    assert shared.status == R.APPROVED  # one approval of one output meets the defaults
    event = Event.objects.filter(request=shared, to_state=R.APPROVED).get()
    assert event.source == "guest link"
    page = reviewer_client.get(reverse("review_detail", args=[shared.pk]))
    assert f"Gemma Guest (guest, link #{link.pk})".encode() in page.content


def test_guest_decision_without_htmx_redirects_back(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=True)
    output = outputs_of(shared)[0]
    token = guests.guest_token(link)
    response = guest(link).post(
        reverse("guest_decide", args=[token, output.pk]), {"verdict": "reject", "reason": "text"}
    )
    assert response.status_code == 302
    assert response["Location"] == guest_paths(link, shared.pk)
    assert Decision.objects.get().verdict == "reject"


def test_link_without_may_decide_cannot_decide(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=False)
    client = guest(link)
    output = outputs_of(shared)[0]
    token = guests.guest_token(link)
    page = client.get(guest_paths(link, shared.pk))
    assert b'name="verdict"' not in page.content

    response = client.post(
        reverse("guest_decide", args=[token, output.pk]), {"verdict": "approve"}, **HTMX
    )

    assert response.status_code == 422
    assert b"not decide" in response.content
    assert not Decision.objects.exists()


def test_guest_reject_needs_a_reason(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=True)
    token = guests.guest_token(link)
    output = outputs_of(shared)[0]
    response = guest(link).post(
        reverse("guest_decide", args=[token, output.pk]), {"verdict": "reject"}, **HTMX
    )
    assert response.status_code == 422
    assert not Decision.objects.exists()


def test_guests_of_one_link_count_as_one_approver(reviewer, requester):
    image_request = request_in_review(requester, real_images=False, required_approvals=2)
    link = link_for(reviewer, image_request, may_decide=True)
    output = outputs_of(image_request)[0]

    guests.decide_as_guest(link=link, guest_name="Gemma", output=output, verdict="approve")
    guests.decide_as_guest(link=link, guest_name="Not Gemma", output=output, verdict="approve")

    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW
    tally = standings(counting_rows(output=output))[output.pk]
    assert len(tally.approvals) == 1

    second = link_for(reviewer, image_request, may_decide=True)
    guests.decide_as_guest(link=second, guest_name="Hal", output=output, verdict="approve")
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_a_guest_changes_their_verdict_by_name_in_any_case(reviewer, requester):
    image_request = request_in_review(requester, real_images=False, required_approvals=2)
    link = link_for(reviewer, image_request, may_decide=True)
    first, second = outputs_of(image_request)
    guests.decide_as_guest(link=link, guest_name="Gemma", output=first, verdict="approve")
    guests.decide_as_guest(
        link=link, guest_name="gemma ", output=first, verdict="reject", reason="text"
    )
    tally = standings(counting_rows(output=first))[first.pk]
    assert tally.rejected and not tally.approvals


def test_acceptance_rule_rejects_still_count_beside_guests(reviewer, requester):
    image_request = request_in_review(requester, real_images=False)
    first, second = outputs_of(image_request)
    Decision.objects.create(output=first, reviewer=None, verdict="reject", reason="size")
    link = link_for(reviewer, image_request, may_decide=True)
    guests.decide_as_guest(link=link, guest_name="Gemma", output=second, verdict="approve")
    tallies = standings(counting_rows(output__request=image_request))
    assert tallies[first.pk].rejected
    assert tallies[second.pk].approvals == {(link.pk, "")}


def test_reviewer_and_guest_approvals_are_distinct(reviewer, requester):
    image_request = request_in_review(requester, real_images=False, required_approvals=2)
    output = outputs_of(image_request)[0]
    link = link_for(reviewer, image_request, may_decide=True)
    guests.decide_as_guest(link=link, guest_name="Gemma", output=output, verdict="approve")
    decide(output=output, reviewer=reviewer, verdict="approve")
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_guest_decision_conflict_is_reported(reviewer, requester):
    image_request = request_in_review(requester, real_images=False, required_approvals=3)
    output = outputs_of(image_request)[0]
    link = link_for(reviewer, image_request, may_decide=True)
    decide(output=output, reviewer=make_user("ray", REVIEWERS), verdict="approve")
    with pytest.raises(DecisionRefused, match="ray decided this output"):
        guests.decide_as_guest(
            link=link, guest_name="Gemma", output=output, verdict="approve", seen_decision_id=0
        )


def test_guest_cannot_decide_a_request_out_of_review(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=True)
    ImageRequest.objects.filter(pk=shared.pk).update(status=R.APPROVED)
    with pytest.raises(DecisionRefused, match="not awaiting review"):
        guests.decide_as_guest(
            link=link, guest_name="Gemma", output=outputs_of(shared)[0], verdict="approve"
        )


def test_guest_comment_becomes_a_note_on_the_whole_output(reviewer, shared):
    link = link_for(reviewer, shared)
    output = outputs_of(shared)[0]
    token = guests.guest_token(link)
    response = guest(link, "Gemma").post(
        reverse("guest_comment", args=[token, output.pk]), {"comment": "warmer light"}, **HTMX
    )
    assert response.status_code == 200
    assert b"warmer light" in response.content
    note = Annotation.objects.get()
    assert (note.output, note.guest_link, note.guest_name, note.author) == (
        output,
        link,
        "Gemma",
        None,
    )
    assert (note.x, note.y, note.width, note.height) == (0, 0, 1, 1)


def test_link_without_may_comment_cannot_comment(reviewer, shared):
    link = link_for(reviewer, shared, may_comment=False)
    token = guests.guest_token(link)
    output = outputs_of(shared)[0]
    response = guest(link).post(
        reverse("guest_comment", args=[token, output.pk]), {"comment": "hello"}, **HTMX
    )
    assert response.status_code == 422
    assert not Annotation.objects.exists()


def test_guest_posts_need_the_csrf_token(reviewer, shared):
    link = link_for(reviewer, shared, may_decide=True)
    client = Client(enforce_csrf_checks=True)
    response = client.post(path_of(link), {"name": "Gemma"})
    assert response.status_code == 403


# Rate limits ---------------------------------------------------------------------------------


def test_link_is_rate_limited_with_a_clear_page(reviewer, shared, settings):
    settings.GUEST_RATE_LIMIT = 3
    link = link_for(reviewer, shared)
    client = Client()
    statuses = [client.get(path_of(link)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get(path_of(link))
    assert int(limited["Retry-After"]) >= 1
    assert b"Too many requests" in limited.content


def test_images_have_their_own_larger_allowance(reviewer, shared, settings):
    settings.GUEST_RATE_LIMIT = 2
    settings.GUEST_FILE_RATE_LIMIT = 5
    link = link_for(reviewer, shared)
    client = guest(link)  # one page call
    token = guests.guest_token(link)
    output = outputs_of(shared)[0]
    url = reverse("guest_file", args=[token, output.pk, "thumb"])
    statuses = [client.get(url).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]


def test_client_address_is_limited_across_links(reviewer, shared, settings):
    settings.GUEST_RATE_LIMIT = 2
    first, second = link_for(reviewer, shared), link_for(reviewer, shared)
    client = Client()
    assert client.get(path_of(first)).status_code == 200
    assert client.get(path_of(second)).status_code == 200
    assert client.get(path_of(first)).status_code == 429
    guessing = client.get(reverse("guest_home", args=["guessed-token"]))
    assert guessing.status_code == 429
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert elsewhere.get(path_of(second)).status_code == 200


def test_open_link_counts_uses(reviewer, shared):
    link = link_for(reviewer, shared)
    token = guests.guest_token(link)
    guests.open_link(token)
    guests.open_link(token, count=False)
    link.refresh_from_db()
    assert link.uses == 1


# Stages ------------------------------------------------------------------------------------


@pytest.fixture
def workflow(db) -> Workflow:
    """Creative, then Brand and legal: one approval of one output each."""
    workflow = Workflow.objects.create(name="Creative, then Brand and legal")
    for position, name in ((1, "Creative"), (2, "Brand and legal")):
        Stage.objects.create(
            workflow=workflow,
            position=position,
            name=name,
            reviewers=Group.objects.get_or_create(name=name)[0],
        )
    return workflow


def test_guest_verdict_counts_in_the_current_stage(requester, workflow):
    first_stage, second_stage = workflow.stages.order_by("position")
    cleo = make_user("cleo", REVIEWERS, "Creative")
    image_request = request_in_review(
        requester, real_images=False, workflow=workflow, stage=first_stage
    )
    link = link_for(cleo, image_request, may_decide=True)
    output = outputs_of(image_request)[0]

    decision = guests.decide_as_guest(
        link=link, guest_name="Gemma", output=output, verdict="approve"
    )

    assert decision.stage == first_stage
    image_request.refresh_from_db()
    assert (image_request.status, image_request.stage) == (R.IN_REVIEW, second_stage)
    # The next stage is not one the person who shared the link decides.
    with pytest.raises(DecisionRefused, match="Brand and legal stage"):
        guests.decide_as_guest(link=link, guest_name="Gemma", output=output, verdict="approve")
    page = guest(link).get(guest_paths(link, image_request.pk))
    assert b'name="verdict"' not in page.content


def test_share_to_decide_needs_the_current_stages_group(requester, workflow):
    first_stage = workflow.stages.get(position=1)
    lena = make_user("lena", REVIEWERS, "Brand and legal")
    image_request = request_in_review(
        requester, real_images=False, workflow=workflow, stage=first_stage
    )
    with pytest.raises(guests.ShareRefused, match="Creative stage"):
        link_for(lena, image_request, may_decide=True)
    assert link_for(lena, image_request, may_decide=False).requests.get() == image_request


def test_library_approval_agrees_with_the_standings_for_guests(reviewer, requester):
    image_request = request_in_review(
        requester, real_images=False, variants=4, required_approvals=2, approval_quota=3
    )
    first, second, third, _ = outputs_of(image_request)
    link, other_link = (link_for(reviewer, image_request, may_decide=True) for _ in range(2))
    ray = make_user("ray", REVIEWERS)

    def by_guest(output, name, verdict, on=link):
        reason = "text" if verdict == "reject" else ""
        guests.decide_as_guest(
            link=on, guest_name=name, output=output, verdict=verdict, reason=reason
        )

    by_guest(first, "Gemma", "approve")
    by_guest(first, "Hal", "approve")  # the same link: still one approver
    by_guest(second, "Gemma", "reject")
    by_guest(second, "GEMMA", "approve")  # changes her mind: her reject no longer counts
    decide(output=second, reviewer=ray, verdict="approve")
    by_guest(third, "Gemma", "approve")
    by_guest(third, "Ivy", "approve", on=other_link)

    tallies = standings(counting_rows(output__request=image_request))
    in_python = {pk for pk, t in tallies.items() if t.approved(2)}
    in_sql = set(
        library.approved(Asset.objects.filter(request=image_request)).values_list("pk", flat=True)
    )
    assert in_python == in_sql == {second.pk, third.pk}


def test_manifest_names_the_guest_and_validates(reviewer, requester, settings):
    settings.MANIFEST_REVIEWER_NAMES = True
    image_request = request_in_review(requester, real_images=False)
    output = outputs_of(image_request)[0]
    link = link_for(reviewer, image_request, may_decide=True)
    guests.decide_as_guest(link=link, guest_name="Gemma", output=output, verdict="approve")

    document = manifest.manifest_for(output)

    jsonschema.validate(document, manifest.schema())
    assert document["decisions"][0]["reviewer"] == {
        "role": "guest",
        "name": f"Gemma (guest link #{link.pk})",
    }
    assert document["approval"]["approved"] is True


def test_guest_pins_a_note_through_the_notes_fragment(reviewer, shared, other):
    link = link_for(reviewer, shared)
    token = guests.guest_token(link)
    output = outputs_of(shared)[0]
    client = guest(link, "Gemma")
    url = reverse("guest_notes", args=[token, output.pk])

    response = client.post(
        url, {"shape": "pin", "x": 0.25, "y": 0.75, "comment": "a buoy too many"}, **HTMX
    )

    assert response.status_code == 200
    assert b"a buoy too many" in response.content
    assert b"Gemma (guest)" in response.content
    assert b"Resolve" not in response.content  # guests do not resolve notes
    note = Annotation.objects.get()
    assert (note.shape, note.x, note.y, note.guest_link, note.guest_name) == (
        "pin",
        0.25,
        0.75,
        link,
        "Gemma",
    )
    assert client.get(url).status_code == 200
    theirs = outputs_of(other)[0]
    assert client.get(reverse("guest_notes", args=[token, theirs.pk])).status_code == 404


def test_guest_notes_need_may_comment(reviewer, shared):
    link = link_for(reviewer, shared, may_comment=False)
    output = outputs_of(shared)[0]
    response = guest(link).post(
        reverse("guest_notes", args=[guests.guest_token(link), output.pk]),
        {"shape": "pin", "x": 0.5, "y": 0.5, "comment": "hello"},
        **HTMX,
    )
    assert response.status_code == 422
    assert b"does not allow notes" in response.content
    assert not Annotation.objects.exists()
    page = guest(link, "Hal").get(guest_paths(link, shared.pk))
    assert b"data-annotate" not in page.content


def test_admin_lists_links_without_their_secret_and_revokes_them(reviewer, shared):
    link = link_for(reviewer, shared)
    admin = client_for(make_user("root", superuser=True))
    listing = admin.get(reverse("admin:imagereview_guestlink_changelist"))
    assert listing.status_code == 200
    detail = admin.get(reverse("admin:imagereview_guestlink_change", args=[link.pk]))
    assert detail.status_code == 200
    assert link.secret.encode() not in listing.content + detail.content

    admin.post(
        reverse("admin:imagereview_guestlink_changelist"),
        {"action": "revoke_links", "_selected_action": [link.pk]},
    )

    link.refresh_from_db()
    assert link.revoked_at is not None
    assert Client().get(path_of(link)).status_code == 410


def test_api_tells_a_guests_verdict_from_a_reviewers(reviewer, requester, shared, settings):
    settings.MANIFEST_REVIEWER_NAMES = True
    link = link_for(reviewer, shared, may_decide=True)
    output = outputs_of(shared)[0]
    guests.decide_as_guest(link=link, guest_name="Gemma", output=output, verdict="approve")

    body = token_client(requester).get(f"/api/v1/requests/{shared.pk}").json()

    (decision,) = body["decisions"]
    assert decision["decided_by"] == "guest"
    assert decision["reviewer"] is None and decision["guest_name"] == "Gemma"
    assert decision["stage"] is None
