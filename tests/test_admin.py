"""The Django admin: every model listed, searchable by prompt and task id; records read-only."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import CallbackReceipt, Decision, Event, Generation
from imagereview.providers.kie import KieClient
from tests.conftest import client_for, make_user

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
