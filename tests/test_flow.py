"""The flow in-process: actions against the sandbox provider over real HTTP."""

import hashlib
import time

import httpx
import pytest
from django.utils import timezone

from imagereview import actions
from imagereview.models import Asset, Decision, Event, Generation, ImageRequest
from tests.conftest import wait_for

G = Generation.State
R = ImageRequest.Status


@pytest.fixture(autouse=True)
def no_callbacks(settings):
    # No web server runs in these tests: the refresh is driven by hand, as the reconciler would.
    settings.KIE_CALLBACKS = False


def new_request(requester, **overrides) -> ImageRequest:
    params = {
        "prompt": "a red fox in fresh snow, morning light",
        "aspect_ratio": "16:9",
        "resolution": "1K",
        "output_format": "png",
        "variants": 2,
    }
    return actions.create_request(requester=requester, **(params | overrides))


def run_to_completion(generation: Generation, kie) -> Generation:
    actions.submit_generation(generation_id=generation.pk, client=kie)

    def finished() -> bool:
        actions.refresh_generation(generation_id=generation.pk, client=kie)
        generation.refresh_from_db()
        return generation.state != G.SUBMITTED

    wait_for(finished, timeout=10, interval=0.05, message="the task to finish")
    actions.store_outputs(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    return generation


def test_request_creates_one_queued_generation_per_variant(
    requester, django_capture_on_commit_callbacks, enqueued
):
    with django_capture_on_commit_callbacks(execute=True):
        image_request = new_request(requester, variants=3)
    generations = list(image_request.generations.all())
    assert [g.variant for g in generations] == [1, 2, 3]
    assert {g.state for g in generations} == {G.QUEUED}
    assert len({g.callback_token for g in generations}) == 3
    # Due at once; the dispatcher, not the web process, sends them with their create slots.
    assert enqueued == []
    assert all(g.next_attempt_at <= timezone.now() for g in generations)


def test_generation_goes_from_prompt_to_stored_output_and_review(requester, reviewer, kie, sandbox):
    image_request = new_request(requester)
    for generation in image_request.generations.all():
        generation = run_to_completion(generation, kie)
        assert generation.state == G.STORED
        assert generation.provider_task_id.startswith("task_nano-banana-pro_")
        assert generation.credits == 18
        assert generation.submitted_at and generation.completed_at and generation.stored_at

    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW
    outputs = list(Asset.objects.filter(request=image_request, kind=Asset.Kind.OUTPUT))
    assert len(outputs) == 2
    for output in outputs:
        assert (output.width, output.height, output.content_type) == (1376, 768, "image/png")
        content = httpx.get(output.source_url).content
        assert output.sha256 == hashlib.sha256(content).hexdigest()
        assert output.file.read() == content
        assert output.thumbnail

    first, second = outputs
    actions.decide(output=second, reviewer=reviewer, verdict="reject", reason="artefacts")
    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW  # one approval is still possible
    actions.decide(output=first, reviewer=reviewer, verdict=Decision.Verdict.APPROVE)
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED
    event = image_request.events.filter(to_state=R.APPROVED).get()
    assert event.actor == reviewer and event.source == "review"


def test_every_step_runs_twice_without_effect(requester, kie, sandbox):
    generation = new_request(requester, variants=1).generations.get()
    generation = run_to_completion(generation, kie)
    events_before = Event.objects.count()

    actions.submit_generation(generation_id=generation.pk, client=kie)
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    actions.store_outputs(generation_id=generation.pk, client=kie)

    assert len(sandbox.tasks) == 1
    assert generation.outputs.count() == 1
    assert Event.objects.count() == events_before


def test_provider_failure_fails_the_generation_with_its_message(requester, kie):
    generation = new_request(requester, prompt="[prohibited] thing", variants=1).generations.get()
    generation = run_to_completion(generation, kie)
    assert generation.state == G.FAILED
    assert generation.failure_code == "422"
    assert "prohibited content" in generation.failure_message
    assert generation.credits == 0
    assert generation.request.status == R.FAILED


def test_one_failed_variant_still_sends_the_others_to_review(requester, kie):
    image_request = new_request(requester, variants=2)
    ok, bad = image_request.generations.all()
    run_to_completion(ok, kie)
    # Make the second variant's task fail by asking for a prompt the sandbox fails on.
    ImageRequest.objects.filter(pk=image_request.pk).update(prompt="[fail] please")
    run_to_completion(bad, kie)
    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW
    assert bad.__class__.objects.get(pk=bad.pk).failure_message == "Internal server error"


def test_a_bad_key_halts_submission_and_parks_the_work(requester, sandbox):
    from imagereview.models import ProviderAccount
    from imagereview.providers.kie import KieClient

    generation = new_request(requester, variants=1).generations.get()
    with KieClient(api_base=sandbox.url, upload_base=sandbox.url, api_key="wrong") as client:
        actions.submit_generation(generation_id=generation.pk, client=client)
    generation.refresh_from_db()
    assert generation.state == G.QUEUED
    assert "halted" in generation.failure_message
    account = ProviderAccount.objects.get()
    assert account.circuit_open and account.circuit_code == "401"
    assert sandbox.tasks == []


def test_decide_refuses_a_reject_without_reason(requester, reviewer, kie):
    generation = run_to_completion(new_request(requester, variants=1).generations.get(), kie)
    output = generation.outputs.get()
    with pytest.raises(actions.DecisionRefused, match="reason"):
        actions.decide(output=output, reviewer=reviewer, verdict="reject")
    assert not Decision.objects.exists()


def test_reconcile_enqueues_quiet_generations_and_resubmits_stuck_ones(
    requester, settings, enqueued, kie
):
    from datetime import timedelta

    from django.utils import timezone

    image_request = new_request(requester, variants=3)
    queued, submitted, stuck = image_request.generations.all()
    long_ago = timezone.now() - timedelta(hours=1)
    Generation.objects.filter(pk=queued.pk).update(updated_at=long_ago, next_attempt_at=long_ago)
    Generation.objects.filter(pk=submitted.pk).update(
        state=G.SUBMITTED,
        provider_task_id="t-1",
        submitted_at=timezone.now(),
        next_attempt_at=long_ago,
    )
    Generation.objects.filter(pk=stuck.pk).update(state=G.SUBMITTING, updated_at=long_ago)
    enqueued.clear()

    counts = actions.reconcile(client=kie)

    [submit] = [job for job in enqueued if job[0] == "imagereview.tasks.submit_generation"]
    assert submit[1] == queued.pk and abs(submit[2] - time.time()) < 5  # its slot's moment
    assert ("imagereview.tasks.refresh_generation", submitted.pk) in enqueued
    assert counts["resubmitted"] == 1
    stuck.refresh_from_db()
    assert stuck.state == G.QUEUED
    assert "unanswered" in stuck.events.get(from_state=G.SUBMITTING, to_state=G.QUEUED).note


def test_the_dispatcher_sends_each_submit_just_before_its_slot(requester, enqueued, settings):
    from imagereview.actions.submission import SUBMIT_LEAD, send_due_submissions

    settings.KIE_SUBMIT_LIMIT, settings.KIE_SUBMIT_WINDOW = 4, 2.0  # a slot every 0.515 s
    settings.DISPATCH_INTERVAL = 1.2
    new_request(requester, variants=4)
    waits = []
    sent = send_due_submissions(now=timezone.now(), limit=10, pace=waits.append)
    # Three slots fall within one dispatcher period; the fourth waits for the next pass.
    assert sent == 3 == len(enqueued)
    moments = [job[2] for job in enqueued]
    assert waits == [moment - SUBMIT_LEAD for moment in moments]
    assert all(b - a == pytest.approx(2.06 / 4) for a, b in zip(moments, moments[1:], strict=False))
    assert Generation.objects.filter(next_attempt_at__lte=timezone.now()).count() == 1
