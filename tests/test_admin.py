"""The Django admin: every model listed, searchable by prompt and task id; records read-only."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import CallbackReceipt, Decision, Event, Generation, ImageRequest
from imagereview.providers.kie import KieClient
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

MODELS = ["imagerequest", "generation", "asset", "decision", "callbackreceipt", "event"]


@pytest.fixture
def admin_client(db):
    return client_for(make_user("root", superuser=True))


@pytest.fixture
def two_requests(requester):
    params = {"aspect_ratio": "1:1", "resolution": "1K", "output_format": "png", "variants": 1}
    fox = actions.create_request(requester=requester, prompt="a red fox in snow", **params)
    owl = actions.create_request(requester=requester, prompt="an owl at dusk", **params)
    Generation.objects.filter(request=fox).update(provider_task_id="task_fox_1", state="submitted")
    return fox, owl


@pytest.mark.parametrize("model", [*MODELS, "provideraccount"])
def test_every_model_has_a_working_changelist(admin_client, two_requests, model):
    response = admin_client.get(reverse(f"admin:imagereview_{model}_changelist"))
    assert response.status_code == 200


def test_requests_are_found_by_prompt_and_by_provider_task_id(admin_client, two_requests):
    fox, owl = two_requests
    url = reverse("admin:imagereview_imagerequest_changelist")
    for query in ("owl", "task_fox_1"):
        listed = admin_client.get(url, {"q": query}).context["cl"].result_list
        assert [r.pk for r in listed] == [owl.pk if query == "owl" else fox.pk]


def test_generations_are_found_by_task_id_and_filtered_by_state(admin_client, two_requests):
    url = reverse("admin:imagereview_generation_changelist")
    listed = admin_client.get(url, {"q": "task_fox_1"}).context["cl"].result_list
    assert [g.provider_task_id for g in listed] == ["task_fox_1"]
    listed = admin_client.get(url, {"state__exact": "queued"}).context["cl"].result_list
    assert [g.request.prompt for g in listed] == ["an owl at dusk"]


@pytest.mark.parametrize("model", [Decision, CallbackReceipt, Event])
def test_records_cannot_be_added_or_deleted_by_hand(admin_client, two_requests, model):
    name = model._meta.model_name
    assert admin_client.get(reverse(f"admin:imagereview_{name}_add")).status_code == 403
    event = Event.objects.first()
    if model is Event:
        delete = reverse("admin:imagereview_event_delete", args=[event.pk])
        assert admin_client.post(delete, {"post": "yes"}).status_code == 403
        assert Event.objects.filter(pk=event.pk).exists()


def test_every_generation_is_born_with_an_event(two_requests):
    for generation in Generation.objects.all():
        assert generation.events.filter(from_state="", to_state="queued").count() == 1


def test_generations_at_risk_of_unrecorded_cost_can_be_listed(admin_client, requester, settings):
    params = {"aspect_ratio": "1:1", "resolution": "1K", "output_format": "png", "variants": 3}
    unanswered, duplicate, estimated = actions.create_request(
        requester=requester, prompt="a kite", **params
    ).generations.all()
    long_ago = timezone.now() - timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE + 1)
    Generation.objects.filter(pk=unanswered.pk).update(state="submitting", updated_at=long_ago)
    actions.reconcile(client=KieClient(api_base="http://127.0.0.1:9", upload_base="", api_key=""))
    Generation.objects.filter(pk=duplicate.pk).update(duplicate_of=estimated)
    Generation.objects.filter(pk=estimated.pk).update(credits_estimated=True)
    url = reverse("admin:imagereview_generation_changelist")
    for risk, generation in [
        ("unanswered", unanswered),
        ("duplicate", duplicate),
        ("estimated", estimated),
    ]:
        listed = admin_client.get(url, {"risk": risk}).context["cl"].result_list
        assert [g.pk for g in listed] == [generation.pk]


def change_post(client, model: str, obj, data: dict):
    return client.post(reverse(f"admin:imagereview_{model}_change", args=[obj.pk]), data)


def test_a_requests_state_and_history_cannot_be_edited(admin_client, requester):
    item = request_in_review(requester, variants=1, real_images=False)
    data = {"status": "approved", "prompt": "something else", "requester": requester.pk}
    assert change_post(admin_client, "imagerequest", item, data).status_code == 403
    item.refresh_from_db()
    assert (item.status, item.prompt) == ("in_review", "a lighthouse at dusk")
    page = admin_client.get(reverse("admin:imagereview_imagerequest_change", args=[item.pk]))
    assert page.status_code == 200 and 'name="status"' not in page.content.decode()


def test_provider_facts_and_file_hashes_cannot_be_edited(admin_client, requester):
    item = request_in_review(requester, variants=1, real_images=False)
    generation, output = item.generations.get(), item.assets.get()
    data = {"state": "queued", "provider_task_id": "another", "request": item.pk}
    assert change_post(admin_client, "generation", generation, data).status_code == 403
    data = {"sha256": "0" * 64, "kind": "output", "request": item.pk}
    assert change_post(admin_client, "asset", output, data).status_code == 403
    generation.refresh_from_db(), output.refresh_from_db()
    assert generation.provider_task_id == f"task_{item.pk}_1" and output.sha256 != "0" * 64
    assert admin_client.get(reverse("admin:imagereview_imagerequest_add")).status_code == 403


def with_task(requester):
    item = ImageRequest.objects.create(requester=requester, prompt="sent")
    Generation.objects.create(request=item, provider_task_id="task_sent", state="submitted")
    return item


def with_outputs(requester):
    return request_in_review(requester, variants=1, real_images=False)


def with_decision(requester):
    item = request_in_review(requester, variants=2, real_images=False)
    reviewer = make_user("rita", REVIEWERS)
    Decision.objects.create(output=item.assets.first(), reviewer=reviewer, verdict="approve")
    return item


@pytest.mark.parametrize("history", [with_task, with_outputs, with_decision])
def test_a_request_with_history_cannot_be_deleted(admin_client, requester, history):
    item = history(requester)
    delete = reverse("admin:imagereview_imagerequest_delete", args=[item.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [item.pk], "post": "yes"}
    admin_client.post(reverse("admin:imagereview_imagerequest_changelist"), bulk)
    assert ImageRequest.objects.filter(pk=item.pk).exists()


def test_a_request_that_never_reached_the_provider_can_be_deleted(admin_client, requester):
    params = {"aspect_ratio": "1:1", "resolution": "1K", "output_format": "png", "variants": 2}
    item = actions.create_request(requester=requester, prompt="never sent", **params)
    assert item.events.exists()
    bulk = {"action": "delete_selected", "_selected_action": [item.pk], "post": "yes"}
    admin_client.post(reverse("admin:imagereview_imagerequest_changelist"), bulk)
    assert not ImageRequest.objects.filter(pk=item.pk).exists()


def run_action(client, model: str, action: str, objects) -> None:
    data = {"action": action, "_selected_action": [obj.pk for obj in objects]}
    response = client.post(reverse(f"admin:imagereview_{model}_changelist"), data)
    assert response.status_code == 302


def test_cancelling_in_the_admin_goes_through_the_action_and_the_audit(admin_client, requester):
    item = with_task(requester)
    generation = item.generations.get()
    run_action(admin_client, "generation", "cancel", [generation])
    generation.refresh_from_db()
    assert (generation.state, generation.failure_code) == ("failed", "cancelled")
    event = generation.events.get(to_state="failed")
    assert (event.source, event.actor.username, event.from_state) == ("admin", "root", "submitted")
    assert ImageRequest.objects.get(pk=item.pk).status == "failed"  # settled like elsewhere


def test_a_request_is_cancelled_and_retried_through_its_generations(admin_client, requester):
    item = with_task(requester)
    run_action(admin_client, "imagerequest", "cancel_unfinished", [item])
    assert ImageRequest.objects.get(pk=item.pk).status == "failed"
    run_action(admin_client, "imagerequest", "retry_failed", [item])
    retry = Generation.objects.get(request=item, retry_of__isnull=False)
    assert retry.events.get(to_state="queued").actor.username == "root"
    assert ImageRequest.objects.get(pk=item.pk).status == "generating"


def test_a_refresh_asked_in_the_admin_is_audited(admin_client, requester, enqueued):
    generation = with_task(requester).generations.get()
    run_action(admin_client, "generation", "refresh_from_provider", [generation])
    event = generation.events.get(note="refresh asked")
    assert (event.source, event.actor.username) == ("admin", "root")


def test_undone_decisions_show_as_undone(admin_client, requester):
    item = with_decision(requester)
    standing = Decision.objects.get()
    undone = Decision.objects.create(
        output=item.assets.last(), reviewer=standing.reviewer, verdict="reject", reason="other"
    )
    Decision.objects.filter(pk=undone.pk).update(undone_at=timezone.now())
    url = reverse("admin:imagereview_decision_changelist")
    body = admin_client.get(url).content.decode()
    assert body.count("(undone ") == 1
    assert [d.pk for d in admin_client.get(url, {"undone": "yes"}).context["cl"].result_list] == [
        undone.pk
    ]
    assert [d.pk for d in admin_client.get(url, {"undone": "no"}).context["cl"].result_list] == [
        standing.pk
    ]
