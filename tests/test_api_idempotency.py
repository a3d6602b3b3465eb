"""Idempotency-Key: a retried create answers what the first attempt answered, once."""

import io
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from PIL import Image

from imagereview.models import Decision, IdempotencyRecord, ImageRequest
from tests.api_support import conforms, token_client
from tests.factories import request_in_review

pytestmark = pytest.mark.django_db

BODY = {"prompt": "a lighthouse", "variants": 2}


def create(client: Client, body: dict = BODY, key: str | None = "key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(
        "/api/v1/requests", json.dumps(body), content_type="application/json", **headers
    )


def test_a_retry_with_the_same_key_replays_the_first_answer(requester):
    client = token_client(requester, "request")
    first = create(client)
    again = conforms(create(client))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ImageRequest.objects.count() == 1


def test_the_same_body_in_another_key_order_is_the_same_request(requester):
    client = token_client(requester, "request")
    create(client, {"prompt": "a lighthouse", "variants": 2})
    again = create(client, {"variants": 2, "prompt": "a lighthouse"})
    assert again["Idempotent-Replayed"] == "true"


def test_without_a_key_each_call_creates(requester):
    client = token_client(requester, "request")
    create(client, key=None)
    create(client, key=None)
    assert ImageRequest.objects.count() == 2


def test_the_same_key_with_another_body_is_refused(requester):
    client = token_client(requester, "request")
    create(client)
    response = conforms(create(client, {**BODY, "prompt": "a windmill"}))
    assert response.status_code == 422
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert ImageRequest.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_refused(requester, reviewer):
    image_request = request_in_review(requester, variants=1, real_images=False)
    client = token_client(reviewer)
    create(client)
    output = image_request.assets.get(kind="output")
    response = client.post(
        f"/api/v1/outputs/{output.pk}/decision",
        json.dumps({"verdict": "approve"}),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    assert response.json()["type"].endswith("/idempotency-key-reused")
    assert not Decision.objects.exists()


def test_keys_belong_to_their_user(requester, reviewer):
    create(token_client(requester, "request"))
    other = create(token_client(reviewer, "request"))
    assert "Idempotent-Replayed" not in other
    assert ImageRequest.objects.count() == 2


def test_a_key_is_kept_for_24_hours(requester):
    client = token_client(requester, "request")
    create(client)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=23))
    assert create(client)["Idempotent-Replayed"] == "true"
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    fresh = create(client, {**BODY, "prompt": "something else"})
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh
    assert ImageRequest.objects.count() == 2


def test_a_refusal_is_replayed_too(requester):
    client = token_client(requester, "request")
    first = create(client, {"prompt": ""})
    again = create(client, {"prompt": ""})
    assert (first.status_code, again.status_code) == (422, 422)
    assert again.json() == first.json()
    assert again["Content-Type"] == "application/problem+json"
    assert again["Idempotent-Replayed"] == "true"


def test_a_server_error_releases_the_key(requester, monkeypatch):
    client = token_client(requester, "request")

    def crash(*args, **kwargs):
        raise RuntimeError("storage down")

    monkeypatch.setattr("imagereview.api.requests.request_detail", crash)
    assert create(client).status_code == 500
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    retry = create(client)
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry


def test_a_key_in_progress_is_a_409_after_a_short_wait(requester, settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0.2
    client = token_client(requester, "request")
    create(client)
    IdempotencyRecord.objects.update(status_code=None, response=None)
    response = conforms(create(client))
    assert response.status_code == 409
    assert response.json()["type"].endswith("/idempotency-in-progress")
    assert response["Retry-After"] == "1"


def test_a_claim_abandoned_long_ago_is_taken_over(requester, settings):
    """A process that died between claiming a key and answering leaves a claim without an
    answer; once it is old, a retry takes it over instead of waiting forever."""
    settings.IDEMPOTENCY_STALE_SECONDS = 60
    client = token_client(requester, "request")
    create(client)
    abandoned = timezone.now() - timedelta(minutes=5)
    IdempotencyRecord.objects.update(status_code=None, response=None, created_at=abandoned)
    response = create(client)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    record = IdempotencyRecord.objects.get()
    assert (record.status_code, record.response["id"]) == (201, response.json()["id"])
    assert record.created_at > abandoned


def test_multipart_retries_match_by_content_not_by_boundary(requester):
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(out, "PNG")

    def send():
        file = io.BytesIO(out.getvalue())
        file.name = "ref.png"
        return token_client(requester, "request").post(
            "/api/v1/requests",
            {"mode": "edit", "prompt": "x", "references": [file]},
            HTTP_IDEMPOTENCY_KEY="upload-1",
        )

    first, again = send(), send()
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert ImageRequest.objects.count() == 1


def test_a_decision_with_a_key_is_recorded_once(requester, reviewer):
    output = request_in_review(requester, variants=2, real_images=False).assets.first()
    client = token_client(reviewer, "review")
    answers = [
        client.post(
            f"/api/v1/outputs/{output.pk}/decision",
            json.dumps({"verdict": "reject", "reason": "text"}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="decide-1",
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert Decision.objects.count() == 1


def test_a_key_longer_than_255_characters_is_invalid(requester):
    response = create(token_client(requester, "request"), key="k" * 256)
    assert response.status_code == 422
    assert not ImageRequest.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_exactly_one_request(requester, settings):
    """Eight clients send the same create with one key at the same moment, each on its own
    database connection: one creates, the others answer with its request."""
    settings.IDEMPOTENCY_WAIT_SECONDS = 30
    client_header = token_client(requester, "request").defaults["HTTP_AUTHORIZATION"]
    start = threading.Barrier(8)
    answers: list = []

    def attempt() -> None:
        try:
            start.wait()
            client = Client(HTTP_AUTHORIZATION=client_header)
            answers.append(create(client, key="race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201] * 8
    assert ImageRequest.objects.count() == 1
    assert {a.json()["id"] for a in answers} == {ImageRequest.objects.get().pk}
    assert sum(a.get("Idempotent-Replayed") == "true" for a in answers) == 7


def test_work_and_its_answer_are_committed_together(requester, monkeypatch):
    """A process that dies after the create but before recording the answer leaves no
    request behind, so the retry that takes the key over creates exactly one."""
    from imagereview.api import idempotency

    client = token_client(requester, "request")
    record_answer = idempotency._answer

    def dies(record, response):
        raise SystemExit("the worker was killed")

    monkeypatch.setattr(idempotency, "_answer", dies)
    with pytest.raises(SystemExit):
        create(client)
    assert ImageRequest.objects.count() == 0
    monkeypatch.setattr(idempotency, "_answer", record_answer)
    assert create(client).status_code == 201
    assert create(client)["Idempotent-Replayed"] == "true"
    assert ImageRequest.objects.count() == 1
