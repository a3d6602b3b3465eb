"""The callback endpoint against strangers and against mistaken or made-up task names.

A stranger's body is not read, and what strangers send is kept in full only for the first few
per window; a task the provider denies is not asked about again, and one generation holds a
bounded number of unclaimed names; a callback refused for its signature still leads, as a
hint proven by recordInfo, to the task its create made.
"""

import json
import logging
import time
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import CallbackReceipt, Generation, ImageRequest
from imagereview.providers.kie import KieClient, callback_signature
from tests.conftest import wait_for

G = Generation.State
RECORD_INFO = "/api/v1/jobs/recordInfo"


@pytest.fixture(autouse=True)
def quick(settings):
    settings.KIE_SLOT_MAX_WAIT = 0.5
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # callbacks go nowhere; tests post them
    settings.CALLBACK_REFUSED_KEPT = 5
    settings.CALLBACK_REFUSED_KEPT_PER_GENERATION = 20
    settings.CALLBACK_REFUSED_WINDOW = 3600
    settings.CALLBACK_UNCLAIMED_MAX = 3


@pytest.fixture
def client(client):
    client.raise_request_exception = False  # an escaped exception is the 500 a stranger sees
    return client


@pytest.fixture
def generation(requester) -> Generation:
    """A generation whose create went unanswered: every recordInfo call is a claim's."""
    image_request = actions.create_request(
        requester=requester,
        prompt="a glass teapot on a wooden table",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    generation = image_request.generations.get()
    Generation.objects.filter(pk=generation.pk).update(state=G.SUBMITTING)
    generation.refresh_from_db()
    return generation


def callback_body(task_id: str = "task_1", pad: int = 0) -> str:
    data = {"taskId": task_id, "state": "success", "note": "x" * pad}
    return json.dumps({"code": 200, "msg": "done", "data": data})


def post(client, generation, body, *, token=None, address="203.0.113.7", headers=None):
    url = reverse("provider_callback", args=[generation.pk, token or generation.callback_token])
    return client.post(
        url, body, content_type="application/json", headers=headers or {}, REMOTE_ADDR=address
    )


def record_info_calls(sandbox) -> int:
    return sandbox.stats["calls"].get(RECORD_INFO, 0)


# Finding 1: a body is read only behind the right token, and only so deep.


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"a":' * 50_000, callback_body()[:-1] + ', "x":' + "[" * 40 + "]" * 40 + "}"],
    ids=["open-arrays", "open-objects", "valid-but-40-deep"],
)
def test_deeply_nested_body_with_the_right_token_is_refused_with_400(client, generation, body):
    response = post(client, generation, body)
    assert response.status_code == 400
    assert CallbackReceipt.objects.get().outcome == CallbackReceipt.Outcome.MALFORMED


@pytest.mark.parametrize("body", ["[" * 100_000, callback_body()], ids=["nested", "well-formed"])
def test_body_with_a_wrong_token_is_answered_404_unread(client, generation, body):
    response = post(client, generation, body, token="not-the-token")
    assert response.status_code == 404
    receipt = CallbackReceipt.objects.get()
    assert (receipt.outcome, receipt.task_id, receipt.code) == ("bad_token", "", None)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"code": 10**30, "data": {"taskId": "task_1"}}),
        json.dumps({"code": 200, "data": {"taskId": "t" * 129}}),
        json.dumps({"code": 200, "data": {"taskId": {"nested": "name"}}}),
        '{"code": NaN, "data": {"taskId": "task_1", "creditsConsumed": Infinity}}',
        json.dumps({"code": 200, "data": {"taskId": "task\x00one"}}),
    ],
    ids=["huge-code", "long-task-id", "object-task-id", "nan", "nul-in-task-id"],
)
def test_odd_values_in_a_body_are_refused_or_kept_without_an_error(client, generation, body):
    response = post(client, generation, body)
    assert response.status_code in (200, 400)
    receipt = CallbackReceipt.objects.get()
    assert len(receipt.task_id) <= 128 and "\x00" not in receipt.task_id
    assert receipt.code is None or abs(receipt.code) < 2**31
    assert response.status_code == 400 or receipt.task_id == "task_1"


def test_a_body_over_the_callback_bound_is_refused_with_400(client, generation, settings):
    settings.CALLBACK_MAX_BYTES = 1000
    assert post(client, generation, callback_body(pad=2000)).status_code == 400
    assert post(client, generation, callback_body(pad=500)).status_code == 200


# Finding 3: strangers write a bounded amount, and are counted beyond it.


def test_refused_callbacks_from_one_address_are_kept_few_and_counted(client, generation, caplog):
    body = callback_body(pad=4000)
    with caplog.at_level(logging.WARNING):
        statuses = {post(client, generation, body, token="wrong").status_code for _ in range(300)}
    assert statuses == {404}
    assert CallbackReceipt.objects.count() == 5
    tally = generation.refused_tallies.get()
    assert (tally.outcome, tally.count, tally.last_remote_addr) == ("bad_token", 295, "203.0.113.7")
    # One line for each kept in full, one when counting begins (Django's own line for each
    # 404 is printed only with DEBUG on).
    assert len([r for r in caplog.records if r.name.startswith("imagereview")]) == 6


def test_refused_callbacks_from_many_addresses_are_bounded_per_generation(client, generation):
    for n in range(50):
        for _ in range(2):
            post(client, generation, "{}", token="wrong", address=f"198.51.100.{n}")
    assert CallbackReceipt.objects.count() == 20
    assert generation.refused_tallies.get().count == 80


def test_a_new_window_keeps_refused_callbacks_in_full_again(client, generation, settings):
    for _ in range(8):
        post(client, generation, "{}", token="wrong")
    earlier = timezone.now() - timedelta(seconds=settings.CALLBACK_REFUSED_WINDOW)
    CallbackReceipt.objects.update(received_at=earlier)
    post(client, generation, "{}", token="wrong")
    assert CallbackReceipt.objects.filter(received_at__gt=earlier).count() == 1


def test_a_flood_of_wrong_tokens_leaves_room_for_the_providers_evidence(
    client, generation, settings
):
    settings.KIE_WEBHOOK_HMAC_KEY = "webhook-secret"
    for _ in range(30):
        post(client, generation, callback_body(), token="wrong")
    assert post(client, generation, callback_body()).status_code == 403
    assert CallbackReceipt.objects.filter(outcome="bad_signature").count() == 1


# Finding 5: a made-up name is asked about once, and a generation holds few unclaimed names.


def test_a_task_the_provider_does_not_know_is_asked_about_once(
    client, generation, sandbox, kie, enqueued
):
    assert post(client, generation, callback_body("task_made_up")).status_code == 200
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    assert record_info_calls(sandbox) == 1
    receipt = CallbackReceipt.objects.get()
    assert receipt.outcome == CallbackReceipt.Outcome.UNKNOWN_TASK

    # Not again: not by a later refresh, the reconciler's sweep, nor a later callback.
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    later = timezone.now() + timedelta(minutes=5)
    assert actions.reconcile(client=kie, now=later)["unclaimed_callbacks"] == 0
    assert post(client, generation, callback_body("task_made_up")).status_code == 200
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    assert record_info_calls(sandbox) == 1
    assert generation.receipts.filter(outcome="unknown_task").count() == 2
    generation.refresh_from_db()
    assert generation.queries == 1


@pytest.mark.parametrize(
    ("code", "outcome"), [(404, "unknown_task"), (422, "unknown_task"), (500, "accepted")]
)
def test_a_name_is_given_up_on_when_the_provider_answers_finally_for_it(
    client, generation, code, outcome
):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": code, "msg": "no", "data": None})

    provider = KieClient(
        api_base="https://api.test",
        upload_base="https://upload.test",
        api_key="k",
        transport=httpx.MockTransport(handler),
    )
    post(client, generation, callback_body("task_made_up"))
    actions.refresh_generation(generation_id=generation.pk, client=provider)
    assert CallbackReceipt.objects.get().outcome == outcome


def test_a_generation_asks_about_no_more_unclaimed_tasks_than_the_bound(
    client, generation, sandbox, kie
):
    for n in range(10):
        assert post(client, generation, callback_body(f"task_made_up_{n}")).status_code == 200
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    assert record_info_calls(sandbox) == 3
    assert generation.receipts.filter(outcome="over_limit").count() == 7


def test_one_name_named_again_and_again_counts_once_against_the_bound(client, generation):
    for _ in range(5):
        post(client, generation, callback_body("task_repeated"))
    post(client, generation, callback_body("task_other"))
    assert not generation.receipts.filter(outcome="over_limit").exists()


# Finding 6: a callback refused for its signature is a hint for the same proof.


def create_task_for(generation: Generation, kie: KieClient) -> str:
    """A task made for `generation` whose create answer the app never saw."""
    return kie.create_task(
        prompt=generation.request.prompt,
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        callback_url=generation.callback_url(),
    )


def signed_with(key: str, task_id: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "X-Webhook-Timestamp": timestamp,
        "X-Webhook-Signature": callback_signature(key, task_id, timestamp),
    }


def test_a_callback_refused_for_its_signature_still_leads_to_its_task(
    client, generation, sandbox, kie, settings, enqueued
):
    settings.KIE_WEBHOOK_HMAC_KEY = "rotated-secret"
    task_id = create_task_for(generation, kie)
    wait_for(lambda: sandbox.tasks[0]["state"] == "success", timeout=10)
    headers = signed_with("previous-secret", task_id)
    assert post(client, generation, callback_body(task_id), headers=headers).status_code == 403
    assert enqueued == []  # refused: the callback itself wakes nothing

    past_grace = timezone.now() + timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE + 1)
    counts = actions.reconcile(client=kie, now=past_grace)
    assert counts["resubmitted"] == 0
    assert ("imagereview.tasks.refresh_generation", generation.pk) in enqueued

    actions.refresh_generation(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    assert (generation.state, generation.provider_task_id) == (G.SUCCEEDED, task_id)
    assert len(sandbox.tasks) == 1  # no second, billed, task


def test_a_signature_refused_hint_is_never_taken_as_a_fact(
    client, requester, sandbox, kie, settings
):
    settings.KIE_WEBHOOK_HMAC_KEY = "webhook-secret"
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    mine, other = (
        Generation.objects.create(request=image_request, state=G.SUBMITTING) for _ in range(2)
    )
    foreign = create_task_for(other, kie)
    post(client, mine, callback_body(foreign), headers=signed_with("wrong", foreign))
    actions.refresh_generation(generation_id=mine.pk, client=kie)
    mine.refresh_from_db()
    assert (mine.state, mine.provider_task_id) == (G.SUBMITTING, None)
    assert CallbackReceipt.objects.get().outcome == CallbackReceipt.Outcome.FOREIGN
