"""The task lifecycle under provider codes, lost answers, odd callbacks and timeouts."""

import io
import json
import time
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from PIL import Image

from imagereview import actions
from imagereview.models import (
    Asset,
    CallbackReceipt,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
)
from imagereview.providers.kie import KieClient
from tests.conftest import wait_for, waiting_jobs

G = Generation.State
R = ImageRequest.Status


@pytest.fixture(autouse=True)
def quick(settings):
    settings.KIE_SLOT_MAX_WAIT = 0.5
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:9"  # callbacks go nowhere; tests post them


def new_request(requester, **overrides) -> ImageRequest:
    params = {
        "prompt": "a glass teapot on a wooden table",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
        "variants": 1,
    }
    return actions.create_request(requester=requester, **(params | overrides))


def answering(create_reply: httpx.Response, *, balance: float = 1000) -> KieClient:
    """A client whose provider has `balance` credits and answers createTask with a reply."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/chat/credit":
            return httpx.Response(200, json={"code": 200, "msg": "success", "data": balance})
        return create_reply

    return KieClient(
        api_base="https://api.test",
        upload_base="https://upload.test",
        api_key="k",
        transport=httpx.MockTransport(handler),
    )


def envelope(code: int, msg: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"code": code, "msg": msg, "data": None}, headers=headers)


@pytest.mark.parametrize("code", [401, 402, 433, 505])
def test_halt_codes_open_the_circuit_and_park_the_work(requester, code, enqueued, kie):
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=answering(envelope(code, "stop")))
    generation.refresh_from_db()
    account = ProviderAccount.objects.get()
    assert generation.state == G.QUEUED
    assert account.circuit_open and account.circuit_code == str(code)
    assert Event.objects.filter(subject="account", to_state="halted").count() == 1

    # While halted, the dispatcher sends no submission at all.
    Generation.objects.filter(pk=generation.pk).update(next_attempt_at=timezone.now())
    enqueued.clear()
    actions.reconcile(client=answering(envelope(code)))
    assert not [job for job in enqueued if job[0].endswith("submit_generation")]


@pytest.mark.parametrize("code", [429, 455, 500])
def test_retry_codes_requeue_with_backoff_honouring_retry_after(requester, code):
    generation = new_request(requester).generations.get()
    before = timezone.now()
    actions.submit_generation(
        generation_id=generation.pk,
        client=answering(envelope(code, "busy", **{"Retry-After": "40"})),
    )
    generation.refresh_from_db()
    assert generation.state == G.QUEUED
    assert generation.failure_code == str(code)
    assert generation.next_attempt_at >= before + timedelta(seconds=40)
    assert not ProviderAccount.objects.get().circuit_open


def test_backoff_grows_with_jitter_and_a_ceiling():
    delays = [actions.backoff(attempt).total_seconds() for attempt in range(1, 12)]
    assert 1 <= delays[0] <= 2
    assert 8 <= delays[3] <= 16
    assert all(150 <= delay <= 300 for delay in delays[-3:])


def test_validation_failure_fails_with_the_providers_message_for_the_requester(requester, client):
    image_request = new_request(requester)
    generation = image_request.generations.get()
    reply = envelope(422, "Invalid prompt: prompt contains prohibited content")
    actions.submit_generation(generation_id=generation.pk, client=answering(reply))
    generation.refresh_from_db()
    image_request.refresh_from_db()
    assert (generation.state, generation.failure_code) == (G.FAILED, "422")
    assert image_request.status == R.FAILED
    client.force_login(requester)
    page = client.get(image_request.get_absolute_url()).content.decode()
    assert "Invalid prompt: prompt contains prohibited content" in page


def test_no_credits_open_the_circuit_before_any_create(requester, sandbox, kie):
    sandbox.configure(credits=5)
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    account = ProviderAccount.objects.get()
    assert account.circuit_open and account.circuit_code == "402"
    assert sandbox.tasks == []

    # Credits return: the next due probe closes the circuit and the work goes out.
    sandbox.configure(credits=500)
    ProviderAccount.objects.update(next_probe_at=timezone.now())
    actions.reconcile(client=kie)
    assert not ProviderAccount.objects.get().circuit_open
    actions.submit_generation(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    assert generation.state == G.SUBMITTED and len(sandbox.tasks) == 1


@pytest.mark.parametrize("code", [402, 433, 401])
def test_after_a_halt_one_create_goes_first_and_the_rest_follow_once_it_is_accepted(
    requester, enqueued, code, settings
):
    settings.KIE_SUBMIT_LIMIT = 1000  # slots for all within one dispatcher period
    generations = list(new_request(requester, variants=4).generations.all())
    actions.open_circuit(code=code, reason="stop")
    ProviderAccount.objects.update(next_probe_at=timezone.now())
    Generation.objects.update(next_attempt_at=timezone.now())

    def submits() -> list:
        return [job for job in enqueued if job[0].endswith("submit_generation")]

    enqueued.clear()
    actions.reconcile(client=answering(envelope(200)))  # the credit check passes
    assert not ProviderAccount.objects.get().circuit_open
    assert len(submits()) == 1

    # Accepted: the account is proven and the others go out together.
    task = {"code": 200, "msg": "success", "data": {"taskId": "t1"}}
    actions.submit_generation(
        generation_id=submits()[0][1], client=answering(httpx.Response(200, json=task))
    )
    assert not ProviderAccount.objects.get().on_trial
    enqueued.clear()
    Generation.objects.filter(state=G.QUEUED).update(next_attempt_at=timezone.now())
    actions.reconcile(client=answering(envelope(200)))
    assert len(submits()) == len(generations) - 1


def test_admins_see_the_halt_and_can_resume(requester, client, db):
    actions.open_circuit(code=402, reason="insufficient credits")
    admin = type(requester).objects.create_superuser("boss", password="boss-password")
    client.force_login(admin)
    page = client.get(reverse("review_queue")).content.decode()
    assert "Submissions are paused." in page and "insufficient credits" in page
    client.post(reverse("resume_submissions"))
    assert not ProviderAccount.objects.get().circuit_open
    client.force_login(requester)
    assert "Submissions are paused." not in client.get(reverse("my_requests")).content.decode()


def test_resume_is_for_staff_only(requester_client):
    actions.open_circuit(code=401, reason="bad key")
    requester_client.post(reverse("resume_submissions"))
    assert ProviderAccount.objects.get().circuit_open


def test_a_create_that_timed_out_waits_then_is_resubmitted(requester, enqueued, settings):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/chat/credit":
            return httpx.Response(200, json={"code": 200, "msg": "ok", "data": 100})
        raise httpx.ReadTimeout("no answer", request=request)

    client = KieClient(
        api_base="https://api.test",
        upload_base="https://u.test",
        api_key="k",
        transport=httpx.MockTransport(handler),
    )
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=client)
    generation.refresh_from_db()
    assert generation.state == G.SUBMITTING  # ambiguous: it may exist and be billed
    assert generation.failure_code == "599"

    actions.reconcile(client=client)
    generation.refresh_from_db()
    assert generation.state == G.SUBMITTING  # still within the grace period

    later = timezone.now() + timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE + 1)
    actions.reconcile(client=client, now=later)
    generation.refresh_from_db()
    assert generation.state == G.QUEUED
    assert "duplicate task may be billed" in generation.events.latest("id").note


def post_callback(client, generation: Generation, task_id: str):
    body = {"code": 200, "msg": "done", "data": {"taskId": task_id, "state": "success"}}
    url = reverse("provider_callback", args=[generation.pk, generation.callback_token])
    return client.post(url, json.dumps(body), content_type="application/json")


def create_task_for(generation: Generation, kie: KieClient) -> str:
    """A task made for `generation` whose create answer the app never saw."""
    return kie.create_task(
        prompt=generation.request.prompt,
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        callback_url=generation.callback_url(),
    )


def finish(generation: Generation, kie: KieClient, sandbox) -> Generation:
    wait_for(lambda: all(t["state"] == "success" for t in sandbox.tasks), timeout=10)
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    actions.store_outputs(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    return generation


def test_an_early_callback_claims_the_task_before_its_create_answer(
    requester, client, kie, sandbox
):
    generation = new_request(requester).generations.get()
    Generation.objects.filter(pk=generation.pk).update(state=G.SUBMITTING)
    task_id = create_task_for(generation, kie)
    wait_for(lambda: sandbox.tasks[0]["state"] == "success", timeout=10)

    assert post_callback(client, generation, task_id).status_code == 200
    generation = finish(generation, kie, sandbox)
    assert (generation.state, generation.provider_task_id) == (G.STORED, task_id)

    # The create's own answer, arriving last, changes nothing.
    from imagereview.actions.submission import _record_submission

    assert _record_submission(generation.pk, task_id)
    assert Generation.objects.count() == 1


def test_a_task_from_an_unanswered_create_is_kept_as_a_visible_duplicate(
    requester, client, kie, sandbox
):
    generation = new_request(requester).generations.get()
    lost = create_task_for(generation, kie)
    actions.submit_generation(generation_id=generation.pk, client=kie)
    generation = finish(generation, kie, sandbox)
    assert generation.provider_task_id != lost

    post_callback(client, generation, lost)
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    duplicate = Generation.objects.get(duplicate_of=generation)
    actions.store_outputs(generation_id=duplicate.pk, client=kie)
    duplicate.refresh_from_db()
    assert (duplicate.provider_task_id, duplicate.state) == (lost, G.STORED)
    assert duplicate.credits == 18
    assert Asset.objects.filter(kind="output", request=generation.request).count() == 2


def test_a_callback_naming_someone_elses_task_is_not_claimed(requester, client, kie, sandbox):
    mine, other = new_request(requester, variants=2).generations.all()
    Generation.objects.filter(pk=mine.pk).update(state=G.SUBMITTING)
    foreign = create_task_for(other, kie)
    wait_for(lambda: sandbox.tasks[0]["state"] == "success", timeout=10)
    post_callback(client, mine, foreign)
    actions.refresh_generation(generation_id=mine.pk, client=kie)
    mine.refresh_from_db()
    assert mine.state == G.SUBMITTING and mine.provider_task_id is None
    assert not Generation.objects.filter(provider_task_id=foreign).exists()

    # Once found foreign, the task is not asked about again.
    queries = sandbox.stats["calls"]["/api/v1/jobs/recordInfo"]
    actions.refresh_generation(generation_id=mine.pk, client=kie)
    assert sandbox.stats["calls"]["/api/v1/jobs/recordInfo"] == queries


def test_duplicate_and_out_of_order_callbacks_end_in_one_state(requester, client, kie, sandbox):
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    task_id = generation.provider_task_id
    # A "failed" body, then two successes: only recordInfo's answer counts.
    url = reverse("provider_callback", args=[generation.pk, generation.callback_token])
    failed = {"code": 501, "data": {"taskId": task_id, "state": "fail"}}
    client.post(url, json.dumps(failed), content_type="application/json")
    post_callback(client, generation, task_id)
    post_callback(client, generation, task_id)
    for _ in range(3):
        generation = finish(generation, kie, sandbox)
    assert generation.state == G.STORED
    assert generation.outputs.count() == 1
    assert CallbackReceipt.objects.filter(verified=True).count() == 3
    assert generation.request.status == R.IN_REVIEW


def test_a_quiet_task_times_out_and_an_admin_can_retry_it(requester, kie, sandbox, settings):
    image_request = new_request(requester)
    generation = image_request.generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    long_ago = timezone.now() - timedelta(seconds=settings.RECONCILE_GIVE_UP + 5)
    Generation.objects.filter(pk=generation.pk).update(submitted_at=long_ago)
    counts = actions.reconcile(client=kie)
    generation.refresh_from_db()
    image_request.refresh_from_db()
    assert counts["timed_out"] == 1
    assert generation.state == G.TIMED_OUT
    assert image_request.status == R.FAILED

    retry = actions.retry_generation(generation_id=generation.pk)
    image_request.refresh_from_db()
    assert retry.retry_of == generation and retry.state == G.QUEUED
    assert image_request.status == R.GENERATING
    assert actions.retry_generation(generation_id=generation.pk) is None  # once only

    # The late task still finishes: its output is kept and the request reaches review.
    generation = finish(generation, kie, sandbox)
    assert generation.state == G.STORED


def test_no_task_times_out_while_the_account_is_halted(requester, kie, sandbox, settings):
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    long_ago = timezone.now() - timedelta(seconds=settings.RECONCILE_GIVE_UP + 5)
    Generation.objects.filter(pk=generation.pk).update(submitted_at=long_ago)
    actions.open_circuit(code=401, reason="bad key")
    assert actions.reconcile(client=answering(envelope(401)))["timed_out"] == 0
    generation.refresh_from_db()
    assert generation.state == G.SUBMITTED


def test_a_refresh_waits_for_a_query_slot(requester, kie, settings):
    from imagereview import limits

    settings.KIE_QUERY_LIMIT, settings.KIE_SLOT_MAX_WAIT = 1, 0.1
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    limits.reserve(limits.query_limit(), max_wait=0)  # someone else took the only slot
    generation.refresh_from_db()
    before = generation.queries
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    assert generation.queries == before
    assert generation.next_attempt_at > timezone.now()


def test_an_expired_result_link_is_refreshed_once_through_the_provider(requester, kie, sandbox):
    sandbox.configure(rate_result_expired=1.0)
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    generation = finish(generation, kie, sandbox)
    assert generation.state == G.STORED
    assert sandbox.stats["calls"]["/api/v1/common/download-url"] == 1


def test_costs_roll_up_per_request_including_failures(requester, client, kie, sandbox):
    image_request = new_request(requester, variants=2)
    ok, bad = image_request.generations.all()
    actions.submit_generation(generation_id=ok.pk, client=kie)
    finish(ok, kie, sandbox)
    Generation.objects.filter(pk=bad.pk).update(state=G.FAILED, credits=0)
    client.force_login(requester)
    page = client.get(image_request.get_absolute_url()).content.decode()
    assert "18 credits" in page


def submitted(requester) -> Generation:
    """A generation whose create named task "t1"."""
    generation = new_request(requester).generations.get()
    task = {"code": 200, "msg": "success", "data": {"taskId": "t1"}}
    actions.submit_generation(
        generation_id=generation.pk, client=answering(httpx.Response(200, json=task))
    )
    generation.refresh_from_db()
    assert generation.state == G.SUBMITTED
    return generation


def refresh(generation: Generation, reply: httpx.Response) -> Generation:
    actions.refresh_generation(generation_id=generation.pk, client=answering(reply))
    generation.refresh_from_db()
    return generation


@pytest.mark.parametrize("code", [401, 402, 433, 505])
def test_halt_codes_from_record_info_open_the_circuit(requester, code):
    generation = refresh(submitted(requester), envelope(code, "stop"))
    account = ProviderAccount.objects.get()
    assert account.circuit_open and account.circuit_code == str(code)
    assert generation.state == G.SUBMITTED
    assert generation.next_attempt_at > timezone.now()


@pytest.mark.parametrize("code", [404, 422])
def test_terminal_codes_from_record_info_fail_the_generation(requester, code):
    generation = refresh(submitted(requester), envelope(code, "no such task"))
    assert generation.state == G.FAILED
    assert generation.failure_code == str(code)
    assert generation.request.status == R.FAILED


@pytest.mark.parametrize("code", [429, 455, 500])
def test_retry_codes_from_record_info_back_off_further_each_time(requester, code):
    generation = submitted(requester)
    delays = []
    for _ in range(4):
        before = timezone.now()
        generation = refresh(generation, envelope(code, "busy"))
        delays.append((generation.next_attempt_at - before).total_seconds())
    assert generation.state == G.SUBMITTED and generation.query_failures == 4
    assert delays[-1] > delays[0] * 2
    assert not ProviderAccount.objects.get().circuit_open

    generation = refresh(generation, envelope(429, "busy", **{"Retry-After": "90"}))
    assert generation.next_attempt_at >= timezone.now() + timedelta(seconds=85)


def test_a_success_without_a_cost_figure_records_the_price_list_estimate(requester):
    generation = submitted(requester)
    data = {
        "taskId": "t1",
        "state": "success",
        "resultJson": json.dumps({"resultUrls": ["https://files.test/a.png"]}),
    }
    generation = refresh(generation, httpx.Response(200, json={"code": 200, "data": data}))
    assert generation.state == G.SUCCEEDED
    assert (generation.credits, generation.credits_estimated) == (18, True)
    assert generation.query_failures == 0


@pytest.mark.parametrize(("code", "state"), [(429, G.SUCCEEDED), (404, G.FAILED)])
def test_a_dead_link_whose_fresh_link_call_fails_is_retried_unless_refused(
    requester, kie, sandbox, code, state
):
    sandbox.configure(rate_result_expired=1.0)
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    wait_for(lambda: all(t["state"] == "success" for t in sandbox.tasks), timeout=10)
    actions.refresh_generation(generation_id=generation.pk, client=kie)

    refusing = answering(httpx.Response(code, json={"code": code, "msg": "not now"}))
    actions.store_outputs(generation_id=generation.pk, client=refusing)
    generation.refresh_from_db()
    assert generation.state == state
    if state == G.SUCCEEDED:
        assert "will be retried" in generation.failure_message
        actions.store_outputs(generation_id=generation.pk, client=kie)
        generation.refresh_from_db()
        assert generation.state == G.STORED


def edit_request(requester) -> ImageRequest:
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(picture, "PNG")
    picture.seek(0)
    return new_request(
        requester,
        mode=ImageRequest.Mode.EDIT,
        references=[actions.ReferenceUpload("harbour.png", picture)],
    )


@pytest.mark.parametrize(("code", "state"), [(500, G.QUEUED), (422, G.FAILED)])
def test_a_failed_reference_upload_makes_no_create_and_takes_no_slot(requester, code, state):
    generation = edit_request(requester).generations.get()
    before = timezone.now()
    actions.submit_generation(
        generation_id=generation.pk, client=answering(envelope(code, "upload refused"))
    )
    generation.refresh_from_db()
    assert generation.state == state
    assert generation.attempts == 0
    assert not Event.objects.filter(generation=generation, to_state=G.SUBMITTING).exists()
    if state == G.QUEUED:
        assert generation.next_attempt_at > before
        assert generation.failure_code == "500"


def test_a_halt_code_on_upload_opens_the_circuit(requester):
    generation = edit_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=answering(envelope(401, "key")))
    generation.refresh_from_db()
    assert generation.state == G.QUEUED
    assert ProviderAccount.objects.get().circuit_code == "401"


def test_the_cluster_runs_the_reconciler_every_minute_as_a_safety_net(db):
    schedule = Schedule.objects.get(name="reconcile generations")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "imagereview.tasks.reconcile",
        Schedule.MINUTES,
        1,
        -1,
    )


def test_a_create_whose_slot_passed_during_a_slow_write_takes_a_new_slot(
    requester, monkeypatch, settings
):
    from imagereview import limits

    settings.KIE_SUBMIT_LIMIT = 100  # the next slot within the quick wait

    real_acquire = limits.acquire
    slots = []

    def acquire(limit, *, max_wait):
        # The first slot's moment passed long ago, as if the write had waited on a lock.
        slot = real_acquire(limit, max_wait=max_wait)
        if not slots:
            slot = limits.Slot(granted=True, at=slot.at - 1.0)
        slots.append(slot)
        return slot

    monkeypatch.setattr(limits, "acquire", acquire)
    generation = submitted(requester)
    assert len(slots) == 2
    assert generation.submitted_at.timestamp() >= slots[1].at


def test_a_create_without_a_fresh_slot_goes_back_to_the_queue_unsent(requester, monkeypatch):
    from imagereview import limits

    late = iter([limits.Slot(granted=True, at=1.0), limits.Slot(granted=False, at=9e9)])
    monkeypatch.setattr(limits, "acquire", lambda limit, *, max_wait: next(late))
    generation = new_request(requester).generations.get()
    actions.submit_generation(generation_id=generation.pk, client=answering(envelope(500)))
    generation.refresh_from_db()
    assert generation.state == G.QUEUED and generation.failure_code == ""
    assert generation.next_attempt_at > timezone.now() + timedelta(days=1)


def test_callbacks_naming_unheld_tasks_wake_a_refresh_once_per_lease(
    requester, client, enqueued, settings
):
    generation = new_request(requester).generations.get()
    post_callback(client, generation, "task_orphan")
    CallbackReceipt.objects.update(received_at=timezone.now() - timedelta(seconds=10))
    refreshes = [("imagereview.tasks.refresh_generation", generation.pk)]

    enqueued.clear()
    assert actions.reconcile(client=answering(envelope(200)))["unclaimed_callbacks"] == 1
    assert [job for job in enqueued if job[0].endswith("refresh_generation")] == refreshes

    enqueued.clear()
    assert actions.reconcile(client=answering(envelope(200)))["unclaimed_callbacks"] == 0

    later = timezone.now() + timedelta(seconds=settings.DISPATCH_LEASE + 1)
    assert actions.reconcile(client=answering(envelope(200)), now=later)["unclaimed_callbacks"] == 1


@pytest.mark.parametrize(("waiting", "sent"), [(0, 4), (97, 3), (100, 0), (5000, 0)])
def test_the_dispatcher_sends_no_more_than_the_broker_backlog_has_room_for(
    requester, enqueued, monkeypatch, settings, waiting, sent
):
    settings.DISPATCH_MAX_BACKLOG = 100
    settings.KIE_SUBMIT_LIMIT = 1000  # slots for all four within one dispatcher period
    monkeypatch.setattr("imagereview.jobs.get_broker", lambda: waiting_jobs(waiting))
    new_request(requester, variants=4)
    Generation.objects.update(next_attempt_at=timezone.now())
    enqueued.clear()
    counts = actions.reconcile(client=answering(envelope(200)))
    assert counts["submit_generation"] == len(enqueued) == sent
    # What was not sent stays due for the next pass.
    due = Generation.objects.filter(next_attempt_at__lte=timezone.now()).count()
    assert due == 4 - sent


def test_a_submit_job_too_late_for_its_slot_goes_back_without_waiting(requester, settings):
    from imagereview import limits

    settings.KIE_SUBMIT_LIMIT, settings.KIE_SUBMIT_WINDOW = 1, 2.0
    settings.KIE_SLOT_MAX_WAIT = 5  # a job sent by hand would wait the 2 s for a slot
    assert limits.reserve(limits.submit_limit(), max_wait=0).granted  # the window is full
    generation = new_request(requester).generations.get()
    started = time.monotonic()
    actions.submit_generation(
        generation_id=generation.pk, client=answering(envelope(500)), slot_at=time.time() - 5
    )
    # Back to the dispatcher at once: no worker sleeps a window away waiting for a slot.
    assert time.monotonic() - started < 1
    generation.refresh_from_db()
    assert generation.state == G.QUEUED and not generation.provider_task_id
    assert generation.next_attempt_at > timezone.now() + timedelta(seconds=1)
