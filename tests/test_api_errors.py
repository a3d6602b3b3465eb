"""Every API error is a problem document; limits on body size and call rate."""

import json
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from imagereview.models import ImageRequest, RateSlot
from tests.api_support import conforms, token_client
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["type"] == f"https://imagereview.invalid/problems/{slug}"
    assert body["status"] == status
    assert body["detail"]
    return body


def test_an_unknown_path_is_a_404_problem(requester):
    assert_problem(token_client(requester).get("/api/v1/nothing/here"), 404, "not-found")
    assert_problem(Client().get("/api/v1/requests/12/nope"), 404, "not-found")
    assert_problem(Client().get("/api/v1/"), 404, "not-found")


def test_a_post_to_an_unknown_path_is_a_404_problem_not_a_csrf_page(requester):
    client = Client(enforce_csrf_checks=True)
    client.force_login(requester)
    response = client.post("/api/v1/outputs/-5/decision", "{}", content_type="application/json")
    assert_problem(response, 404, "not-found")


def test_a_wrong_method_is_a_405_problem(requester):
    response = token_client(requester).delete("/api/v1/requests")
    body = assert_problem(response, 405, "method-not-allowed")
    assert set(response["Allow"].split(", ")) == {"GET", "POST"}
    assert "DELETE" in body["detail"]


def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(requester, settings):
    settings.API_MAX_BODY_BYTES = 100
    body = json.dumps({"prompt": "x" * 200})
    response = token_client(requester).post(
        "/api/v1/requests", body, content_type="application/json"
    )
    problem = assert_problem(response, 413, "too-large")
    assert "over the limit of 100 bytes" in problem["detail"]
    assert not ImageRequest.objects.exists()


def test_the_body_cap_is_checked_before_authentication(db, settings):
    settings.API_MAX_BODY_BYTES = 10
    response = Client().post("/api/v1/requests", "{}" * 20, content_type="application/json")
    assert_problem(response, 413, "too-large")


def test_uploads_have_a_cap_of_their_own(requester, settings):
    settings.API_MAX_UPLOAD_BYTES = 1000
    big = SimpleUploadedFile("big.png", b"x" * 2000)
    response = token_client(requester).post(
        "/api/v1/requests", {"mode": "edit", "prompt": "x", "references": [big]}
    )
    assert "1,000 bytes" in assert_problem(response, 413, "too-large")["detail"]


def test_a_crash_is_a_500_problem_and_is_logged(requester, monkeypatch, caplog):
    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("imagereview.api.requests.request_detail", crash)
    ImageRequest.objects.create(requester=requester, prompt="x")
    with caplog.at_level(logging.ERROR, logger="imagereview.api"):
        response = token_client(requester).get(f"/api/v1/requests/{ImageRequest.objects.get().pk}")
    body = assert_problem(response, 500, "server-error")
    assert "disk on fire" not in body["detail"]
    assert "disk on fire" in caplog.text


def test_a_query_parameter_of_the_wrong_type_is_a_validation_problem(requester):
    response = conforms(token_client(requester).get("/api/v1/outputs?request=abc"))
    body = assert_problem(response, 422, "validation")
    assert list(body["errors"]) == ["request"]


def test_calls_over_the_rate_limit_get_429_with_retry_after(requester, settings):
    settings.API_RATE_LIMIT = 3
    client = token_client(requester, "read")
    assert [client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]
    response = conforms(client.get("/api/v1/me"))
    assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another token of the same user counts on its own.
    assert token_client(requester, "read").get("/api/v1/me").status_code == 200


def test_the_rate_is_counted_where_every_web_process_sees_it(requester, settings):
    """The count lives in the database (or Redis), not in this process's memory."""
    settings.REDIS_URL = ""
    client = token_client(requester, "read")
    client.get("/api/v1/me")
    client.get("/api/v1/requests")
    assert RateSlot.objects.filter(key__startswith="api:token:").count() == 2


def test_the_session_is_rate_limited_per_user(requester, settings):
    settings.API_RATE_LIMIT = 1
    client = client_for(requester)
    assert client.get("/api/v1/me").status_code == 200
    assert_problem(client.get("/api/v1/me"), 429, "rate-limited")


def test_the_session_needs_the_csrf_token_to_create(requester):
    client = Client(enforce_csrf_checks=True)
    client.force_login(requester)
    body = json.dumps({"prompt": "from the page"})
    refused = client.post("/api/v1/requests", body, content_type="application/json")
    assert_problem(refused, 403, "forbidden")
    assert not ImageRequest.objects.exists()
    client.get("/requests/new/")  # a page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/requests", body, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201


def test_an_id_past_64_bits_is_a_validation_problem_not_a_crash(requester):
    """Found by the schema fuzzing: SQLite cannot even bind such a number."""
    client = token_client(requester, "read")
    response = conforms(client.get("/api/v1/outputs?request=99999999999999999999999"))
    assert response.status_code == 422
    assert "request" in response.json()["errors"]
