"""Requesters' pages: the new-request form, my requests and a request's progress."""

import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview.models import Event, Generation, ImageRequest
from tests.conftest import client_for, make_user

VALID = {
    "prompt": "a lighthouse at dusk, long exposure",
    "aspect_ratio": "3:2",
    "resolution": "2K",
    "output_format": "jpg",
    "variants": "2",
}


def test_new_request_form_renders(requester_client):
    response = requester_client.get(reverse("new_request"))
    assert response.status_code == 200
    assert b'name="prompt"' in response.content
    assert b"<title>New request \xc2\xb7 imagereview</title>" in response.content
    assert b"references.js" not in response.content


def test_new_request_requires_login(client):
    response = client.get(reverse("new_request"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_new_request_creates_request_and_generations(
    requester_client, requester, django_capture_on_commit_callbacks, enqueued
):
    with django_capture_on_commit_callbacks(execute=True):
        response = requester_client.post(reverse("new_request"), VALID)
    image_request = ImageRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == image_request.get_absolute_url()
    assert image_request.requester == requester
    assert (image_request.aspect_ratio, image_request.resolution) == ("3:2", "2K")
    assert image_request.output_format == "jpg"
    assert image_request.generations.count() == 2
    # Due at once for the dispatcher; nothing is sent from the web process.
    assert enqueued == []
    assert all(g.next_attempt_at <= timezone.now() for g in image_request.generations.all())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prompt": ""}, "Enter a prompt"),
        ({"prompt": "   "}, "Enter a prompt"),
        ({"prompt": "x" * 10001}, "at most 10,000 characters (it has 10001)"),
        ({"aspect_ratio": "7:3"}, "7:3 is not a valid aspect ratio"),
        ({"resolution": "8K"}, "8K is not a valid resolution"),
        ({"output_format": "jpeg"}, "jpeg is not a valid output format"),
        ({"variants": "5"}, "Choose between 1 and 4 variants"),
        ({"variants": "0"}, "Choose between 1 and 4 variants"),
        ({"required_approvals": "6"}, "Choose between 1 and 5 approvals per output"),
        ({"required_approvals": "0"}, "Choose between 1 and 5 approvals per output"),
        ({"approval_quota": "5"}, "Choose between 1 and 4 approved outputs"),
        (
            {"approval_quota": "3"},
            "Need at most 2 approved outputs: only 2 variants are asked for.",
        ),
        (
            {"variants": "1", "approval_quota": "2"},
            "Need at most 1 approved output: only 1 variant is asked for.",
        ),
    ],
)
def test_bad_input_gets_a_clear_message_and_creates_nothing(requester_client, change, message):
    response = requester_client.post(reverse("new_request"), VALID | change)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImageRequest.objects.exists()
    assert not Generation.objects.exists()
    assert not Event.objects.exists()


def test_new_request_sets_the_review_policy(requester_client):
    policy = {"variants": "4", "required_approvals": "2", "approval_quota": "3"}
    response = requester_client.post(reverse("new_request"), VALID | policy)
    assert response.status_code == 302
    image_request = ImageRequest.objects.get()
    assert (image_request.required_approvals, image_request.approval_quota) == (2, 3)


def test_new_request_policy_defaults_to_one_approval_of_one_output(requester_client):
    form = requester_client.get(reverse("new_request")).content.decode()
    assert 'name="required_approvals"' in form and 'name="approval_quota"' in form
    requester_client.post(reverse("new_request"), VALID)
    image_request = ImageRequest.objects.get()
    assert (image_request.required_approvals, image_request.approval_quota) == (1, 1)


def test_a_prompt_of_exactly_10000_characters_is_accepted(requester_client):
    response = requester_client.post(reverse("new_request"), VALID | {"prompt": "y" * 10000})
    assert response.status_code == 302
    assert len(ImageRequest.objects.get().prompt) == 10000


def test_my_requests_lists_only_my_requests(requester_client, requester, db):
    other = make_user("bob")
    mine = ImageRequest.objects.create(requester=requester, prompt="mine")
    ImageRequest.objects.create(requester=other, prompt="not mine")
    response = requester_client.get(reverse("my_requests"))
    assert response.status_code == 200
    assert list(response.context["image_requests"]) == [mine]


def test_my_requests_htmx_returns_the_polling_fragment_while_generating(
    requester_client, requester
):
    ImageRequest.objects.create(requester=requester, prompt="p")
    response = requester_client.get(reverse("my_requests"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="request-rows"')
    assert 'hx-trigger="every 2s"' in body
    assert "<html" not in body


def test_my_requests_stops_polling_when_everything_is_final(requester_client, requester):
    ImageRequest.objects.create(requester=requester, prompt="p", status="approved")
    response = requester_client.get(reverse("my_requests"), headers={"HX-Request": "true"})
    assert "hx-trigger" not in response.content.decode()


def test_request_detail_is_hidden_from_other_requesters(requester, db):
    image_request = ImageRequest.objects.create(requester=requester, prompt="secret")
    response = client_for(make_user("mallory")).get(image_request.get_absolute_url())
    assert response.status_code == 404


def test_request_detail_shows_progress_and_htmx_fragment(requester_client, requester):
    image_request = ImageRequest.objects.create(requester=requester, prompt="p", variants=1)
    Generation.objects.create(request=image_request, variant=1)
    page = requester_client.get(image_request.get_absolute_url())
    assert page.status_code == 200 and b"Variant 1" in page.content
    fragment = requester_client.get(
        image_request.get_absolute_url(), headers={"HX-Request": "true"}
    )
    assert fragment.content.decode().lstrip().startswith('<section id="progress"')


def test_request_detail_shows_the_review_policy(requester_client, requester):
    image_request = ImageRequest.objects.create(
        requester=requester, prompt="p", variants=4, required_approvals=3, approval_quota=2
    )
    body = requester_client.get(image_request.get_absolute_url()).content.decode()
    assert "Needs 2 approved outputs, 0 so far; each output needs 3 approvals" in body


def test_prompt_markup_is_shown_as_text(requester_client, requester):
    image_request = ImageRequest.objects.create(
        requester=requester, prompt="<script>alert(1)</script><b>bold</b>"
    )
    body = requester_client.get(image_request.get_absolute_url()).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_home_sends_reviewers_to_the_queue_and_requesters_to_their_list(
    requester_client, reviewer_client
):
    assert requester_client.get("/")["Location"] == reverse("my_requests")
    assert reviewer_client.get("/")["Location"] == reverse("review_queue")
