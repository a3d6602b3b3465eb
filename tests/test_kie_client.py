"""The provider client against the contract's codes table, with one-off reply shapes."""

import base64
import email.utils
import hashlib
import hmac
import json
import time

import httpx
import pytest

from imagereview.providers.errors import Action, ProviderError, classify
from imagereview.providers.kie import (
    KieClient,
    callback_signature,
    callback_task_id,
    parse_task,
    verify_callback_signature,
)

CODES_TABLE = {
    401: Action.HALT,
    402: Action.HALT,
    404: Action.FAIL,
    422: Action.FAIL,
    429: Action.RETRY,
    433: Action.HALT,
    455: Action.RETRY,
    500: Action.RETRY,
    501: Action.FAIL,
    505: Action.HALT,
}


def client_answering(handler) -> KieClient:
    return KieClient(
        api_base="https://api.test",
        upload_base="https://upload.test",
        api_key="k",
        transport=httpx.MockTransport(handler),
    )


def envelope(code: int, data=None, *, key: str = "msg", status: int = 200, headers=None):
    body = {"code": code, key: f"message for {code}", "data": data}
    return lambda request: httpx.Response(status, json=body, headers=headers or {})


@pytest.mark.parametrize(("code", "action"), CODES_TABLE.items())
def test_envelope_code_is_classified_per_the_codes_table(code, action):
    with pytest.raises(ProviderError) as caught:
        client_answering(envelope(code)).record_info("task_1")
    assert caught.value.code == code
    assert caught.value.action == action
    assert caught.value.message == f"message for {code}"


@pytest.mark.parametrize(("code", "action"), CODES_TABLE.items())
def test_create_task_raises_the_same_classification(code, action):
    with pytest.raises(ProviderError) as caught:
        client_answering(envelope(code)).create_task(
            prompt="p", aspect_ratio="1:1", resolution="1K", output_format="png"
        )
    assert caught.value.action == action
    assert not caught.value.ambiguous


def test_unknown_codes_classify_by_family():
    assert classify(503) == Action.RETRY
    assert classify(418) == Action.FAIL


def test_message_key_may_be_message_instead_of_msg():
    with pytest.raises(ProviderError) as caught:
        client_answering(envelope(422, key="message")).record_info("t")
    assert caught.value.message == "message for 422"


def test_http_429_with_retry_after_is_a_retry_that_honours_the_header():
    handler = envelope(429, status=429, headers={"Retry-After": "7"})
    with pytest.raises(ProviderError) as caught:
        client_answering(handler).record_info("t")
    assert caught.value.action == Action.RETRY
    assert caught.value.retry_after == 7.0


def test_http_500_without_an_envelope_is_a_retry():
    client = client_answering(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(ProviderError) as caught:
        client.credit_balance()
    assert caught.value.code == 502
    assert caught.value.action == Action.RETRY


def test_garbled_envelope_on_http_200_is_an_error():
    client = client_answering(lambda request: httpx.Response(200, text="<html>oops"))
    with pytest.raises(ProviderError, match="no valid envelope"):
        client.credit_balance()


def test_http_error_status_wins_over_an_envelope_saying_200():
    handler = envelope(200, data={"taskId": "x"}, status=500)
    with pytest.raises(ProviderError) as caught:
        client_answering(handler).record_info("x")
    assert caught.value.code == 500


def test_create_task_sends_the_contract_body_and_bearer_key():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["Authorization"]
        seen["path"] = request.url.path
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "t1"}})

    task_id = client_answering(handler).create_task(
        prompt="a fox",
        aspect_ratio="16:9",
        resolution="2K",
        output_format="jpg",
        callback_url="https://app.test/cb",
    )
    assert task_id == "t1"
    assert seen["auth"] == "Bearer k"
    assert seen["path"] == "/api/v1/jobs/createTask"
    assert seen["body"] == {
        "model": "nano-banana-pro",
        "callBackUrl": "https://app.test/cb",
        "input": {
            "prompt": "a fox",
            "image_input": [],
            "aspect_ratio": "16:9",
            "resolution": "2K",
            "output_format": "jpg",
        },
    }


def create(client: KieClient) -> str:
    return client.create_task(prompt="p", aspect_ratio="1:1", resolution="1K", output_format="png")


def test_create_task_without_task_id_is_an_ambiguous_error():
    with pytest.raises(ProviderError, match="without a taskId") as caught:
        create(client_answering(envelope(200, data={})))
    assert caught.value.ambiguous


@pytest.mark.parametrize(
    ("status", "text"), [(502, "Bad Gateway"), (504, "Gateway Timeout"), (200, "<html>oops")]
)
def test_a_create_answered_without_the_providers_envelope_is_ambiguous(status, text):
    with pytest.raises(ProviderError) as caught:
        create(client_answering(lambda request: httpx.Response(status, text=text)))
    assert caught.value.ambiguous
    assert caught.value.action == Action.RETRY


def test_a_create_refused_with_a_bare_429_or_an_enveloped_500_is_not_ambiguous():
    bare_429 = client_answering(lambda request: httpx.Response(429, text="slow down"))
    for client in (bare_429, client_answering(envelope(500, status=500))):
        with pytest.raises(ProviderError) as caught:
            create(client)
        assert not caught.value.ambiguous
        assert caught.value.action == Action.RETRY


def test_retry_after_may_be_an_http_date():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    handler = envelope(429, status=429, headers={"Retry-After": later})
    with pytest.raises(ProviderError) as caught:
        client_answering(handler).record_info("t")
    assert 25 <= caught.value.retry_after <= 31


def test_api_calls_send_the_json_content_type_even_without_a_body():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Content-Type")))
        data = {"taskId": "t", "state": "waiting"} if "record" in request.url.path else 5
        return httpx.Response(200, json={"code": 200, "msg": "success", "data": data})

    client = client_answering(handler)
    client.record_info("t")
    client.credit_balance()
    assert seen == [
        ("/api/v1/jobs/recordInfo", "application/json"),
        ("/api/v1/chat/credit", "application/json"),
    ]


def test_a_read_timeout_on_create_is_ambiguous():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderError) as caught:
        client_answering(handler).create_task(
            prompt="p", aspect_ratio="1:1", resolution="1K", output_format="png"
        )
    assert caught.value.ambiguous
    assert caught.value.action == Action.RETRY


def test_a_connect_error_on_create_is_not_ambiguous():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderError) as caught:
        client_answering(handler).create_task(
            prompt="p", aspect_ratio="1:1", resolution="1K", output_format="png"
        )
    assert not caught.value.ambiguous


def test_a_timeout_on_a_query_is_never_ambiguous():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderError) as caught:
        client_answering(handler).record_info("t")
    assert not caught.value.ambiguous


def test_record_info_parses_json_strings_and_both_credit_spellings():
    data = {
        "taskId": "t9",
        "state": "success",
        "param": json.dumps({"callBackUrl": "https://app.test/cb/1/x"}),
        "resultJson": json.dumps({"resultUrls": ["https://files.test/a.png"]}),
        "failCode": "",
        "consumeCredits": 18,
        "completeTime": 1765178625768,
    }
    record = client_answering(envelope(200, data=data)).record_info("t9")
    assert record.task_id == "t9"
    assert record.is_final
    assert record.result_urls == ["https://files.test/a.png"]
    assert record.callback_url == "https://app.test/cb/1/x"
    assert record.credits == 18
    assert parse_task({"task_id": "t2", "creditsConsumed": "24"}).credits == 24


def test_failed_task_keeps_its_code_and_message():
    record = parse_task(
        {"taskId": "t", "state": "fail", "failCode": "422", "failMsg": "Invalid prompt"}
    )
    assert (record.state, record.fail_code, record.fail_message) == (
        "fail",
        "422",
        "Invalid prompt",
    )
    assert record.result_urls == []


def test_callback_task_id_is_found_in_every_known_place():
    assert callback_task_id({"data": {"taskId": "a"}}) == "a"
    assert callback_task_id({"data": {"task_id": "b"}}) == "b"
    assert callback_task_id({"taskId": "c", "data": None}) == "c"
    assert callback_task_id({"data": {}}) == ""


def test_callback_signature_is_base64_of_hmac_sha256_over_task_id_dot_timestamp():
    # Computed apart from the code under test, by the contract's recipe.
    expected = base64.b64encode(
        hmac.new(b"secret", b"task_1.1700000000", hashlib.sha256).digest()
    ).decode()
    assert callback_signature("secret", "task_1", "1700000000") == expected
    ok = {"key": "secret", "task_id": "task_1", "timestamp": "1700000000", "tolerance": 300}
    assert verify_callback_signature(**ok, signature=expected, now=1700000100)
    hex_digest = hmac.new(b"secret", b"task_1.1700000000", hashlib.sha256).hexdigest()
    assert not verify_callback_signature(**ok, signature=hex_digest, now=1700000100)


def test_callback_signature_verifies_within_the_window_only():
    signature = callback_signature("secret", "t1", "1000")
    ok = {"key": "secret", "task_id": "t1", "timestamp": "1000", "tolerance": 300}
    assert verify_callback_signature(**ok, signature=signature, now=1100)
    assert not verify_callback_signature(**ok, signature=signature, now=1400)
    assert not verify_callback_signature(**ok, signature="AAAA" + signature[4:], now=1100)
    assert not verify_callback_signature(**(ok | {"task_id": "t2"}), signature=signature, now=1100)
    assert not verify_callback_signature(**(ok | {"timestamp": "x"}), signature=signature, now=1100)


def test_credit_balance_and_fresh_download_url():
    assert client_answering(envelope(200, data=1234.5)).credit_balance() == 1234.5
    fresh = client_answering(envelope(200, data="https://files.test/fresh")).fresh_download_url(
        "https://files.test/old"
    )
    assert fresh == "https://files.test/fresh"


def test_upload_file_posts_multipart_to_the_upload_host():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["host"] = request.url.host
        seen["path"] = request.url.path
        seen["type"] = request.headers["Content-Type"]
        data = {"downloadUrl": "https://upload.test/files/ref.png", "filePath": "refs/ref.png"}
        return httpx.Response(200, json={"success": True, "code": 200, "msg": "ok", "data": data})

    uploaded = client_answering(handler).upload_file(
        content=b"\x89PNG", file_name="ref.png", content_type="image/png", upload_path="/refs/"
    )
    assert uploaded.download_url == "https://upload.test/files/ref.png"
    assert seen["host"] == "upload.test"
    assert seen["path"] == "/api/file-stream-upload"
    assert seen["type"].startswith("multipart/form-data")
