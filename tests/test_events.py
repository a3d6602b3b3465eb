"""What the workflow tells subscribers: one event per change, in the change's transaction."""

import pytest
from django.db import transaction

from imagereview import actions
from imagereview.models import Asset, Decision, Generation, ImageRequest, WebhookEvent
from imagereview.transitions import lock, move
from tests.conftest import make_user
from tests.factories import request_in_review

pytestmark = pytest.mark.django_db

G = Generation.State


def event_types() -> list[str]:
    return list(WebhookEvent.objects.order_by("id").values_list("type", flat=True))


def outputs(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk"))


def test_an_output_is_announced_once_when_it_reaches_its_approvals(requester, reviewer):
    second = make_user("sam", "reviewers")
    image_request = request_in_review(requester, variants=1, required_approvals=2)
    (output,) = outputs(image_request)
    actions.decide(output=output, reviewer=reviewer, verdict="approve")
    assert event_types() == []
    actions.decide(output=output, reviewer=second, verdict="approve")
    assert event_types() == ["output.approved"]
    data = WebhookEvent.objects.get().payload["data"]
    assert (data["output_id"], data["approvals"], data["required_approvals"]) == (output.pk, 2, 2)
    assert data["request_url"].endswith(f"/requests/{image_request.pk}/")


def test_a_reject_is_announced_with_its_reason_and_comment(requester, reviewer):
    image_request = request_in_review(requester, variants=2)
    first, _ = outputs(image_request)
    actions.decide(
        output=first, reviewer=reviewer, verdict="reject", reason="text", comment="Misspelt sign"
    )
    (event,) = WebhookEvent.objects.all()
    assert event.type == "output.rejected"
    assert (event.payload["data"]["reason"], event.payload["data"]["comment"]) == (
        "text",
        "Misspelt sign",
    )


def test_the_acceptance_rules_announce_their_rejects(requester):
    image_request = request_in_review(
        requester, variants=1, acceptance_rules={"auto_reject": ["aspect_ratio"]}
    )
    (output,) = outputs(image_request)
    Asset.objects.filter(pk=output.pk).update(
        flagged=True,
        checks=[{"name": "aspect_ratio", "passed": False, "detail": "2:1, asked 1:1"}],
    )
    with transaction.atomic():
        actions.review.apply_acceptance_rules(lock(ImageRequest, image_request.pk))
    assert Decision.objects.get().reviewer is None
    (event,) = WebhookEvent.objects.all()
    assert (event.type, event.payload["data"]["reason"]) == ("output.rejected", "size")


def test_a_change_request_is_announced_with_its_revision(requester, reviewer):
    image_request = request_in_review(requester, variants=1)
    (output,) = outputs(image_request)
    revision = actions.request_changes(
        output=output,
        reviewer=reviewer,
        prompt="the same, at night",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        comment="Darker",
    )
    (event,) = WebhookEvent.objects.all()
    assert event.type == "request.changes_requested"
    data = event.payload["data"]
    assert (data["revision_id"], data["revised_prompt"], data["comment"]) == (
        revision.pk,
        "the same, at night",
        "Darker",
    )


def test_a_request_whose_every_generation_failed_is_announced(requester):
    image_request = actions.create_request(
        requester=requester,
        prompt="a bridge",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    generation = image_request.generations.get()
    with transaction.atomic():
        generation = lock(Generation, generation.pk)
        move(
            generation,
            G.FAILED,
            source="test",
            failure_code="422",
            failure_message="prompt refused",
        )
        actions.settle_request(image_request.pk)
    (event,) = WebhookEvent.objects.all()
    assert event.type == "request.failed"
    assert event.payload["data"]["failures"] == [
        {"variant": 1, "code": "422", "message": "prompt refused"}
    ]


def test_a_refused_decision_announces_nothing(requester, reviewer):
    image_request = request_in_review(requester, variants=1)
    (output,) = outputs(image_request)
    with pytest.raises(actions.DecisionRefused):
        actions.decide(output=output, reviewer=requester, verdict="approve")
    assert event_types() == []
