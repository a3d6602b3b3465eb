"""Property-based fuzzing of what a stranger or a garbled provider can send us.

The callback view, with any headers and body, answers one of its documented statuses, writes
at most one bounded receipt and changes no generation. The provider client, given any reply
to any call, returns a well-typed value that fits its columns or raises ProviderError; a
refresh applies any recordInfo reply without an error.

Each test runs FUZZ_EXAMPLES examples (60 unless set): `FUZZ_EXAMPLES=5000 pytest
tests/test_callback_fuzz.py` is the long run.
"""

import json
import os
import time
from decimal import Decimal

import httpx
import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagereview import actions
from imagereview.models import CallbackReceipt, Generation, ImageRequest
from imagereview.providers.errors import ProviderError
from imagereview.providers.kie import (
    MAX_RETRY_AFTER,
    MAX_TASK_CREDITS,
    TASK_ID,
    KieClient,
    TaskRecord,
    UploadedFile,
    callback_signature,
)
from imagereview.views.callbacks import KEPT_HEADERS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HMAC_KEY = "webhook-secret"

odd_values = st.sampled_from(
    [None, True, False, 0, -1, 2**31, -(2**63), 10**40, 1.5, 1e308, "", " ", "\x00", "x" * 300]
    + ["NaN", "Infinity", "1e999", "-5", "200", [], {}, [None], {"": None}]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
values = odd_values | json_values
task_ids = st.sampled_from(["task_1", "task_2", "", "t" * 129, "task\x001", "tâche", " t"])
task_ids = task_ids | st.text(max_size=12) | st.integers()
numbers = values | st.decimals(allow_nan=False).map(str) | st.integers(-(10**30), 10**30)
result_json = (
    values
    | st.text(max_size=40)
    | json_values.map(json.dumps)
    | st.lists(values | st.text(max_size=40), max_size=10).map(
        lambda urls: json.dumps({"resultUrls": urls})
    )
    | st.just("[" * 5000)
)
task_data = st.fixed_dictionaries(
    {},
    optional={
        "taskId": task_ids,
        "task_id": task_ids,
        "state": values | st.sampled_from(["success", "fail", "waiting", "generating"]),
        "resultJson": result_json,
        "param": result_json | st.text().map(lambda url: json.dumps({"callBackUrl": url})),
        "failCode": values,
        "failMsg": values,
        "creditsConsumed": numbers,
        "consumeCredits": numbers,
        "completeTime": numbers,
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": values | st.sampled_from([200, 200, 404, 429, 501, 500]),
        "msg": values,
        "data": task_data | values,
        "taskId": task_ids,
    },
)
raw_bodies = st.sampled_from(
    ["[" * 100_000, '{"a":' * 50_000, '{"code": NaN}', '{"code": 1e999}', "\ufeff{}", ""]
)
bodies = (
    envelopes.map(lambda envelope: json.dumps(envelope).encode())
    | raw_bodies.map(str.encode)
    | st.binary(max_size=300)
    | st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass"))
)


# The callback view.


@pytest.fixture
def generation(requester) -> Generation:
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    return Generation.objects.create(
        request=image_request, state=Generation.State.SUBMITTED, provider_task_id="task_1"
    )


def snapshot(generation: Generation) -> dict:
    generation.refresh_from_db()
    return {f.name: getattr(generation, f.name) for f in Generation._meta.concrete_fields}


def signed_headers(body: bytes, at: float) -> dict[str, str]:
    """Headers that sign the task a body names, when it names one a signature can cover."""
    try:
        task_id = json.loads(body)["data"]["taskId"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return {}
    timestamp = str(int(at))
    return {
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": callback_signature(HMAC_KEY, str(task_id), timestamp),
    }


@pytest.mark.parametrize("key", ["", HMAC_KEY], ids=["unsigned", "signed"])
def test_the_callback_view_answers_anything_as_documented(client, generation, settings, key):
    settings.KIE_WEBHOOK_HMAC_KEY = key
    settings.CALLBACK_REFUSED_KEPT = 3
    settings.CALLBACK_REFUSED_KEPT_PER_GENERATION = 6
    client.raise_request_exception = False
    before = snapshot(generation)

    @given(
        right_token=st.booleans(),
        body=bodies,
        headers=st.dictionaries(st.sampled_from(KEPT_HEADERS), st.text(max_size=60)),
        sign=st.booleans(),
        address=st.sampled_from(["203.0.113.1", "203.0.113.2", "2001:db8::1"]),
    )
    @fuzz
    def answered(right_token, body, headers, sign, address):
        token = generation.callback_token if right_token else "not-the-token"
        if sign:
            headers = headers | signed_headers(body, time.time())
        last = CallbackReceipt.objects.order_by("-id").values_list("id", flat=True).first() or 0
        response = client.post(
            reverse("provider_callback", args=[generation.pk, token]),
            body,
            content_type=headers.pop("Content-Type", "application/json"),
            headers=headers,
            REMOTE_ADDR=address,
        )
        assert response.status_code in {200, 400, 403, 404}
        assert response.json()["code"] == response.status_code
        new = list(CallbackReceipt.objects.filter(id__gt=last))
        assert len(new) <= 1
        for receipt in new:
            assert receipt.verified == (response.status_code == 200)
            assert len(receipt.body) <= 100_000 and "\x00" not in receipt.body
            assert receipt.task_id == "" or TASK_ID.fullmatch(receipt.task_id)
        if not right_token:
            assert response.status_code == 404
            assert all(receipt.task_id == "" for receipt in new)
        assert snapshot(generation) == before
        assert Generation.objects.count() == 1
        refused = CallbackReceipt.objects.filter(verified=False)
        for outcome in CallbackReceipt.Outcome.values:
            assert refused.filter(outcome=outcome).count() <= 6

    answered()


# The provider client, and a refresh applying what it parsed.


retry_after = st.sampled_from(
    ["", "5", "-3", "nan", "inf", "1e400", "99999999", "Wed, 21 Oct 2015 07:28:00 GMT"]
    + ["Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 32 Foo 0000 99:99:99 GMT", "0x10", "\x00"]
)
replies = st.fixed_dictionaries(
    {
        "status": st.sampled_from([200, 200, 200, 201, 400, 401, 404, 429, 500, 502, 503])
        | st.integers(100, 599),
        "body": bodies
        | envelopes.map(lambda envelope: json.dumps({"code": 200} | envelope).encode())
        | task_data.map(lambda data: json.dumps({"code": 200, "data": data}).encode())
        | values.map(lambda data: json.dumps({"code": 200, "msg": "", "data": data}).encode()),
        "headers": st.fixed_dictionaries(
            {},
            optional={
                "Retry-After": retry_after | st.text(max_size=20),
                "Content-Type": st.sampled_from(
                    ["application/json", "text/html", "application/json; charset=nonesuch"]
                ),
            },
        ),
    }
)


def answering(reply: dict) -> KieClient:
    headers = {name: value.encode("utf-8", "replace") for name, value in reply["headers"].items()}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(reply["status"], content=reply["body"], headers=headers)

    return KieClient(
        api_base="https://api.test",
        upload_base="https://upload.test",
        api_key="k",
        transport=httpx.MockTransport(handler),
    )


def storable(text: str, limit: int) -> bool:
    return isinstance(text, str) and len(text) <= limit and "\x00" not in text


def check_task_record(record: TaskRecord) -> None:
    assert record.task_id == "" or TASK_ID.fullmatch(record.task_id)
    assert storable(record.state, 16) and storable(record.fail_code, 16)
    assert storable(record.fail_message, 2000) and storable(record.callback_url, 4000)
    assert all(storable(url, 4000) for url in record.result_urls)
    assert record.credits is None or (
        isinstance(record.credits, Decimal) and 0 <= record.credits <= MAX_TASK_CREDITS
    )
    assert record.complete_time_ms is None or type(record.complete_time_ms) is int


def check_error(error: ProviderError) -> None:
    # The code is kept as a failure code, in at most 16 characters.
    assert type(error.code) is int and 100 <= error.code <= 999
    assert storable(error.message, 500)
    assert error.retry_after is None or 0 <= error.retry_after <= MAX_RETRY_AFTER


CALLS = {
    "create_task": lambda client: client.create_task(
        prompt="p", aspect_ratio="1:1", resolution="1K", output_format="png"
    ),
    "record_info": lambda client: client.record_info("task_1"),
    "credit_balance": lambda client: client.credit_balance(),
    "fresh_download_url": lambda client: client.fresh_download_url("https://x.test/a.png"),
    "upload_file": lambda client: client.upload_file(
        content=b"abc", file_name="a.png", content_type="image/png", upload_path="refs"
    ),
}


def check_result(call: str, result) -> None:
    if call == "create_task":
        assert TASK_ID.fullmatch(result)
    elif call == "record_info":
        check_task_record(result)
    elif call == "credit_balance":
        assert isinstance(result, Decimal) and result.is_finite()
    elif call == "fresh_download_url":
        assert isinstance(result, str) and result
    else:
        assert isinstance(result, UploadedFile) and type(result.size) is int
        assert isinstance(result.download_url, str) and storable(result.file_path, 500)


@pytest.mark.parametrize("call", list(CALLS))
def test_the_client_parses_any_reply_into_a_value_or_a_provider_error(call):
    @given(reply=replies)
    @fuzz
    def parsed(reply):
        with answering(reply) as client:
            try:
                result = CALLS[call](client)
            except ProviderError as error:
                check_error(error)
            else:
                check_result(call, result)

    parsed()


def test_a_refresh_applies_any_record_info_reply_without_an_error(generation, settings):
    settings.KIE_SLOT_MAX_WAIT = 0.5
    submitted = {
        field: getattr(generation, field)
        for field in ("state", "provider_task_id", "provider_state", "result_urls", "credits")
        + ("failure_code", "failure_message", "query_failures", "completed_at")
    }

    @given(reply=replies)
    @fuzz
    def applied(reply):
        Generation.objects.filter(pk=generation.pk).update(**submitted)
        with answering(reply) as client:
            actions.refresh_generation(generation_id=generation.pk, client=client)
        generation.refresh_from_db()
        assert generation.state in Generation.State.values
        assert generation.credits is None or 0 <= generation.credits <= MAX_TASK_CREDITS
        assert all(storable(url, 4000) for url in generation.result_urls)
        assert storable(generation.failure_code, 16) and "\x00" not in generation.failure_message

    applied()


def reply(body, status: int = 200, **headers: str) -> dict:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"status": status, "body": content, "headers": headers}


def task(**data) -> dict:
    return {"code": 200, "msg": "", "data": {"taskId": "task_1", "state": "success"} | data}


# Replies the fuzzing found (or the probe did), kept as fixed examples.
FOUND = {
    "nested-envelope": ("record_info", reply(b"[" * 100_000)),
    "nested-result-json": ("record_info", reply(task(resultJson="[" * 100_000))),
    "nan-credits": ("record_info", reply(b'{"code": 200, "data": {"creditsConsumed": NaN}}')),
    "nan-complete-time": ("record_info", reply(b'{"code": 200, "data": {"completeTime": NaN}}')),
    "nul-in-fail-message": ("record_info", reply(task(state="fail", failMsg="bad\x00"))),
    "object-task-id": ("create_task", reply({"code": 200, "data": {"taskId": {"a": 1}}})),
    "huge-code": ("record_info", reply({"code": -(2**63), "msg": "?"})),
    "infinite-retry-after": ("record_info", reply({"code": 429}, **{"Retry-After": "inf"})),
    "nan-balance": ("credit_balance", reply(b'{"code": 200, "data": NaN}')),
    "text-file-size": (
        "upload_file",
        reply({"code": 200, "data": {"downloadUrl": "u", "fileSize": "x"}}),
    ),
}


@pytest.mark.parametrize(("call", "found"), list(FOUND.values()), ids=list(FOUND))
def test_replies_found_by_fuzzing_give_a_value_or_a_provider_error(call, found):
    with answering(found) as client:
        try:
            result = CALLS[call](client)
        except ProviderError as error:
            check_error(error)
        else:
            check_result(call, result)


def test_result_urls_given_as_one_string_are_not_read_as_its_characters():
    found = reply(task(resultJson='{"resultUrls": "https://a.test/1.png"}'))
    with answering(found) as client:
        assert client.record_info("task_1").result_urls == []
