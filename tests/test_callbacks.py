"""The callback endpoint: authentic callbacks wake a refresh; anything else changes nothing."""

import json
import time

import pytest
from django.urls import reverse

from imagereview.models import CallbackReceipt, Generation, ImageRequest
from imagereview.providers.kie import callback_signature

REFRESH = "imagereview.tasks.refresh_generation"


@pytest.fixture
def generation(requester) -> Generation:
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    return Generation.objects.create(
        request=image_request, state=Generation.State.SUBMITTED, provider_task_id="task_1"
    )


def callback_body(task_id: str = "task_1", **extra) -> str:
    data = {"taskId": task_id, "state": "success", "resultJson": "{}", "creditsConsumed": 18}
    return json.dumps(
        {"code": 200, "msg": "Playground task completed successfully.", "data": data | extra}
    )


def post(client, generation: Generation, *, token: str | None = None, body=None, headers=None):
    url = reverse("provider_callback", args=[generation.pk, token or generation.callback_token])
    return client.post(
        url,
        body if body is not None else callback_body(),
        content_type="application/json",
        headers=headers or {},
    )


def snapshot(generation: Generation) -> dict:
    generation.refresh_from_db()
    return {f.name: getattr(generation, f.name) for f in Generation._meta.concrete_fields}


def test_authentic_callback_is_recorded_answered_and_wakes_a_refresh(
    client, generation, django_capture_on_commit_callbacks, enqueued
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, generation)
    assert response.status_code == 200
    assert response.json() == {"code": 200, "msg": "success"}
    receipt = CallbackReceipt.objects.get()
    assert (receipt.outcome, receipt.verified, receipt.task_id) == ("accepted", True, "task_1")
    assert receipt.code == 200
    assert enqueued == [(REFRESH, generation.pk)]


def test_callback_does_not_change_the_generation_by_itself(client, generation):
    before = snapshot(generation)
    post(client, generation)
    assert snapshot(generation) == before


def test_wrong_token_is_refused_and_changes_nothing(
    client, generation, django_capture_on_commit_callbacks, enqueued
):
    before = snapshot(generation)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, generation, token="not-the-token")
    # Answered as an unknown generation is, so that ids cannot be probed.
    unknown = reverse("provider_callback", args=[generation.pk + 1000, "not-the-token"])
    assert response.status_code == 404
    assert response.content == client.post(unknown, "{}", content_type="application/json").content
    assert snapshot(generation) == before
    assert enqueued == []
    receipt = CallbackReceipt.objects.get()
    assert (receipt.outcome, receipt.verified) == ("bad_token", False)


def test_unknown_generation_is_404(client, generation):
    url = reverse("provider_callback", args=[generation.pk + 1000, generation.callback_token])
    assert client.post(url, callback_body(), content_type="application/json").status_code == 404
    assert not CallbackReceipt.objects.exists()


def test_get_is_refused(client, generation):
    url = reverse("provider_callback", args=[generation.pk, generation.callback_token])
    assert client.get(url).status_code == 405


def test_malformed_body_is_refused(client, generation, enqueued):
    response = post(client, generation, body="not json")
    assert response.status_code == 400
    assert CallbackReceipt.objects.get().outcome == "malformed"
    assert enqueued == []


def test_callback_with_task_id_in_an_older_place_is_accepted(client, generation):
    body = json.dumps({"code": 200, "data": {"task_id": "task_1"}})
    assert post(client, generation, body=body).status_code == 200


class TestWithHmacKey:
    @pytest.fixture(autouse=True)
    def hmac_key(self, settings):
        settings.KIE_WEBHOOK_HMAC_KEY = "webhook-secret"

    def signed(self, task_id="task_1", *, key="webhook-secret", at=None) -> dict:
        timestamp = str(int(at if at is not None else time.time()))
        return {
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Signature": callback_signature(key, task_id, timestamp),
        }

    def test_correct_signature_is_accepted(
        self, client, generation, django_capture_on_commit_callbacks, enqueued
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, generation, headers=self.signed())
        assert response.status_code == 200
        assert enqueued == [(REFRESH, generation.pk)]

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"key": "another-secret"},
            {"at": time.time() - 3600},
            {"task_id": "task_other"},
        ],
        ids=["unsigned", "wrong-key", "stale", "other-task"],
    )
    def test_bad_signature_is_refused_and_changes_nothing(
        self, client, generation, headers, django_capture_on_commit_callbacks, enqueued
    ):
        before = snapshot(generation)
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, generation, headers=self.signed(**headers) if headers else {})
        assert response.status_code == 403
        assert snapshot(generation) == before
        assert enqueued == []
        assert CallbackReceipt.objects.get().outcome == "bad_signature"
