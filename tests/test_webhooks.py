"""Signed webhooks, against a real receiver that verifies every signature over HTTP."""

import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imagereview.actions import webhooks
from imagereview.models import (
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.conftest import client_for, make_user, wait_for
from tests.webhook_receiver import WebhookReceiver

D = WebhookDelivery.State
DELIVER = "imagereview.tasks.deliver_webhook"


@pytest.fixture
def endpoint(db, webhook_receiver: WebhookReceiver) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url=webhook_receiver.url, secret=webhook_receiver.secret, description="downstream"
    )


@pytest.fixture
def emit(django_capture_on_commit_callbacks):
    """Emit an event as a change would, running the on-commit enqueues."""

    def emit(event_type: str = "output.approved", data: dict | None = None) -> WebhookEvent:
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            return webhooks.emit(event_type, data or {"output_id": 7})

    return emit


@pytest.fixture
def staff_client(db) -> Client:
    return client_for(make_user("root", superuser=True))


def run_deliveries(enqueued: list[tuple]) -> int:
    """Run the delivery jobs enqueued so far, as a worker would; return how many ran."""
    jobs = [job for job in enqueued if job[0] == DELIVER]
    enqueued[:] = [job for job in enqueued if job[0] != DELIVER]
    for _, delivery_id in jobs:
        webhooks.deliver(delivery_id=delivery_id)
    return len(jobs)


def delivery_of(event: WebhookEvent) -> WebhookDelivery:
    return WebhookDelivery.objects.get(event=event)


def test_emit_delivers_an_event_whose_signature_the_receiver_verifies(
    endpoint, emit, enqueued, webhook_receiver
):
    event = emit("output.published", {"output_id": 7, "sha256": "ab" * 32})

    delivery = delivery_of(event)
    assert enqueued == [(DELIVER, delivery.pk)]
    assert delivery.next_attempt_at > timezone.now()  # leased until its job runs
    run_deliveries(enqueued)

    [seen] = webhook_receiver.seen()
    assert seen.verified
    assert seen.webhook_id == event.event_id
    assert seen.payload == {
        "type": "output.published",
        "timestamp": event.payload["timestamp"],
        "data": {"output_id": 7, "sha256": "ab" * 32},
    }
    assert abs(int(seen.timestamp) - time.time()) < 5
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (D.DELIVERED, 1, 200)
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.error) == (1, 200, "")
    assert attempt.response_excerpt == '{"ok": true}'


def test_delivery_retries_until_the_receiver_accepts(
    endpoint, emit, enqueued, webhook_receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0, 0]
    webhook_receiver.configure(fail_first=2)
    delivery = delivery_of(emit())

    for _ in range(3):
        webhooks.deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (D.DELIVERED, 3)
    statuses = [a.status_code for a in delivery.attempt_log.order_by("number")]
    assert statuses == [500, 500, 200]
    seen = webhook_receiver.seen()
    assert [r.status for r in seen] == [500, 500, 200]
    assert {r.webhook_id for r in seen} == {delivery.event.event_id}
    assert all(r.verified for r in seen)


def test_a_retry_waits_for_its_time_even_when_a_stray_job_runs_early(
    endpoint, emit, enqueued, webhook_receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [60]
    webhook_receiver.configure(fail_first=1)
    delivery = delivery_of(emit())
    run_deliveries(enqueued)
    delivery.refresh_from_db()
    due = delivery.next_attempt_at
    assert timedelta(seconds=53) < due - timezone.now() < timedelta(seconds=67)

    webhooks.deliver(delivery_id=delivery.pk)
    assert webhooks.send_due_deliveries(timezone.now(), limit=10) == 0
    assert len(webhook_receiver.seen()) == 1

    WebhookAttempt.objects.update(created_at=timezone.now() - timedelta(seconds=70))
    assert webhooks.send_due_deliveries(due + timedelta(seconds=1), limit=10) == 1
    run_deliveries(enqueued)
    delivery.refresh_from_db()
    assert delivery.state == D.DELIVERED


def test_an_exhausted_schedule_fails_the_delivery_and_marks_the_endpoint(
    endpoint, emit, enqueued, webhook_receiver, settings, staff_client
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]
    webhook_receiver.configure(fail_first=99)
    delivery = delivery_of(emit())

    for _ in range(4):
        webhooks.deliver(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == (D.FAILED, 3, None)
    assert len(webhook_receiver.seen()) == 3
    assert endpoint.failing_since is not None
    listing = staff_client.get(reverse("webhook_endpoints")).content.decode()
    assert "Failing since" in listing and "1 failed" in listing
    page = staff_client.get(reverse("webhook_endpoint", args=[endpoint.pk])).content.decode()
    assert "Redeliver all failed (1)" in page
    assert page.count("HTTP 500") == 3


def test_a_success_clears_the_failing_mark(endpoint, emit, enqueued, settings):
    endpoint.failing_since = timezone.now()
    endpoint.save()
    emit()
    run_deliveries(enqueued)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_redeliver_sends_the_same_webhook_id_on_a_fresh_schedule(
    endpoint, emit, enqueued, webhook_receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    event = emit()
    run_deliveries(enqueued)
    delivery = delivery_of(event)
    delivery.refresh_from_db()
    assert delivery.state == D.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.redeliver(delivery_id=delivery.pk, actor=make_user("ops"))
    assert (delivery.state, delivery.attempts) == (D.PENDING, 0)
    run_deliveries(enqueued)

    delivery.refresh_from_db()
    assert delivery.state == D.DELIVERED
    assert [r.webhook_id for r in webhook_receiver.seen()] == [event.event_id] * 2
    assert [a.number for a in delivery.attempt_log.order_by("number")] == [1, 2]
    audit = Event.objects.get(subject="webhook")
    assert (audit.from_state, audit.to_state, audit.actor.username) == ("failed", "pending", "ops")


def test_redeliver_leaves_a_pending_delivery_alone(endpoint, emit, enqueued):
    delivery = delivery_of(emit())
    enqueued.clear()
    assert webhooks.redeliver(delivery_id=delivery.pk, actor=None).state == D.PENDING
    assert enqueued == []


def test_redeliver_failed_sends_every_failed_delivery_of_the_endpoint(
    endpoint, emit, enqueued, webhook_receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    events = [emit(data={"n": n}) for n in range(3)]
    run_deliveries(enqueued)
    assert WebhookDelivery.objects.filter(state=D.FAILED).count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.redeliver_failed(endpoint_id=endpoint.pk, actor=None) == 3
    assert run_deliveries(enqueued) == 3
    assert WebhookDelivery.objects.filter(state=D.DELIVERED).count() == 3
    accepted = {r.webhook_id for r in webhook_receiver.accepted()}
    assert accepted == {event.event_id for event in events}


def test_an_endpoint_not_subscribed_to_a_type_gets_nothing(
    endpoint, emit, enqueued, webhook_receiver
):
    endpoint.event_types = ["output.published"]
    endpoint.save()
    emit("output.rejected")
    emit("output.published")
    run_deliveries(enqueued)
    assert [r.type for r in webhook_receiver.seen()] == ["output.published"]
    assert WebhookEvent.objects.count() == 2


def test_an_inactive_endpoint_gets_nothing(endpoint, emit, enqueued, webhook_receiver):
    endpoint.active = False
    endpoint.save()
    emit()
    assert not WebhookDelivery.objects.exists()
    assert enqueued == []


def test_a_paused_endpoint_keeps_its_pending_deliveries_until_it_is_active(
    endpoint, emit, enqueued, webhook_receiver
):
    delivery = delivery_of(emit())
    WebhookEndpoint.objects.update(active=False)
    run_deliveries(enqueued)
    later = timezone.now() + timedelta(minutes=5)
    assert webhooks.send_due_deliveries(later, limit=10) == 0
    assert webhook_receiver.seen() == []

    WebhookEndpoint.objects.update(active=True)
    assert webhooks.send_due_deliveries(later, limit=10) == 1
    run_deliveries(enqueued)
    delivery.refresh_from_db()
    assert delivery.state == D.DELIVERED


def test_an_event_rolled_back_with_its_change_is_never_sent(endpoint, enqueued):
    with pytest.raises(RuntimeError), transaction.atomic():
        webhooks.emit("request.failed", {"request_id": 1})
        raise RuntimeError("the change failed")
    assert not WebhookEvent.objects.exists()
    assert enqueued == []


def test_an_unknown_event_type_is_refused(endpoint):
    with pytest.raises(ValueError, match="unknown webhook event type"):
        webhooks.emit("output.painted", {})


def test_a_delivered_delivery_is_not_sent_twice(endpoint, emit, enqueued, webhook_receiver):
    delivery = delivery_of(emit())
    run_deliveries(enqueued)
    webhooks.deliver(delivery_id=delivery.pk)
    webhooks.deliver(delivery_id=delivery.pk + 1000)
    assert len(webhook_receiver.seen()) == 1


def test_an_attempt_in_progress_elsewhere_is_not_made_again_until_given_up(
    endpoint, emit, enqueued, webhook_receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    delivery = delivery_of(emit())
    WebhookAttempt.objects.create(delivery=delivery, number=1)  # another worker's POST
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=1)

    webhooks.deliver(delivery_id=delivery.pk)
    assert webhook_receiver.seen() == []

    stale = timezone.now() - timedelta(seconds=settings.WEBHOOK_TIMEOUT + 11)
    WebhookAttempt.objects.update(created_at=stale)
    webhooks.deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == D.DELIVERED
    first, second = delivery.attempt_log.order_by("number")
    assert (first.status_code, first.error) == (None, "cut short: no outcome was recorded")
    assert second.status_code == 200


def test_a_redirect_is_a_failed_attempt(endpoint, emit, enqueued, webhook_receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    webhook_receiver.configure(fail_first=1, fail_status=302)
    delivery = delivery_of(emit())
    run_deliveries(enqueued)
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 302
    assert "redirect not followed" in attempt.error
    delivery.refresh_from_db()
    assert delivery.state == D.PENDING


def test_a_slow_receiver_times_out(endpoint, emit, enqueued, webhook_receiver, settings):
    settings.WEBHOOK_TIMEOUT = 0.3
    webhook_receiver.configure(delay=1.0)
    emit()
    started = time.monotonic()
    run_deliveries(enqueued)
    assert time.monotonic() - started < 0.9
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert attempt.error == "no answer within 0.3 s"


def test_a_long_answer_is_kept_as_an_excerpt(endpoint, emit, enqueued, webhook_receiver):
    webhook_receiver.configure(answer=b"x" * 50_000)
    emit()
    run_deliveries(enqueued)
    assert len(WebhookAttempt.objects.get().response_excerpt) == 2048


def test_a_url_refused_at_delivery_time_fails_the_attempt_with_the_reason(
    endpoint, emit, enqueued, settings
):
    WebhookEndpoint.objects.update(url="http://10.0.0.1/hooks")
    emit()
    run_deliveries(enqueued)
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None
    assert "non-public address 10.0.0.1" in attempt.error


def test_send_due_deliveries_leases_what_it_enqueues(endpoint, emit, enqueued, settings):
    for n in range(3):
        emit(data={"n": n})
    enqueued.clear()
    later = timezone.now() + timedelta(seconds=settings.DISPATCH_LEASE + 1)

    assert webhooks.send_due_deliveries(later, limit=2) == 2
    assert webhooks.send_due_deliveries(later, limit=2) == 1
    assert webhooks.send_due_deliveries(later, limit=2) == 0
    assert len(enqueued) == 3


# The pages


def endpoint_post(**changes) -> dict:
    return {
        "url": "http://127.0.0.1:9/hooks",
        "description": "the CMS",
        "event_types": ["output.approved", "output.published"],
        "active": "on",
        **changes,
    }


def test_new_endpoint_is_saved_with_a_secret(staff_client):
    response = staff_client.post(reverse("new_webhook_endpoint"), endpoint_post())
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("webhook_endpoint", args=[endpoint.pk])
    assert endpoint.event_types == ["output.approved", "output.published"]
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.created_by.username == "root"
    page = staff_client.get(response.url).content.decode()
    assert endpoint.secret in page and "Rotate secret" in page


@pytest.mark.parametrize(
    ("url", "overrides", "message"),
    [
        ("http://10.0.0.1/hooks", {}, "non-public address 10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", {}, "non-public address 169.254.169.254"),
        ("http://127.0.0.1:8000/hooks", {"WEBHOOK_ALLOW_LOOPBACK": False}, "127.0.0.1"),
        ("http://hooks.example.com/", {"WEBHOOK_REQUIRE_HTTPS": True}, "must start with https://"),
    ],
)
def test_the_form_refuses_a_url_webhooks_may_not_go_to(
    staff_client, settings, url, overrides, message
):
    for name, value in overrides.items():
        setattr(settings, name, value)
    response = staff_client.post(reverse("new_webhook_endpoint"), endpoint_post(url=url))
    assert response.status_code == 422
    page = response.content.decode()
    assert "This URL cannot receive webhooks" in page and message in page
    assert not WebhookEndpoint.objects.exists()


def test_editing_an_endpoint_keeps_its_secret_and_refuses_a_private_url(staff_client, endpoint):
    secret = endpoint.secret
    url = reverse("webhook_endpoint", args=[endpoint.pk])
    refused = staff_client.post(url, endpoint_post(url="http://192.168.1.10/"))
    assert refused.status_code == 422
    endpoint.refresh_from_db()
    assert endpoint.url.startswith("http://127.0.0.1:")

    response = staff_client.post(url, endpoint_post(event_types=[], active=""))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types, endpoint.active) == (
        "http://127.0.0.1:9/hooks",
        [],
        False,
    )
    assert endpoint.secret == secret


def test_rotating_the_secret_signs_with_the_new_one(staff_client, endpoint):
    old = endpoint.secret
    response = staff_client.post(reverse("rotate_webhook_secret", args=[endpoint.pk]))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret.startswith("whsec_")


def test_rotating_the_secret_by_htmx_answers_the_secret_panel(staff_client, endpoint):
    response = staff_client.post(
        reverse("rotate_webhook_secret", args=[endpoint.pk]), headers={"HX-Request": "true"}
    )
    endpoint.refresh_from_db()
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<section class="card" id="secret">')
    assert endpoint.secret in page and "<html" not in page


def test_redeliver_by_htmx_answers_the_delivery_row(
    staff_client,
    endpoint,
    emit,
    enqueued,
    webhook_receiver,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    delivery = delivery_of(emit())
    run_deliveries(enqueued)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("redeliver_webhook", args=[delivery.pk]), headers={"HX-Request": "true"}
        )
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith(f'<article class="card delivery" id="delivery-{delivery.pk}">')
    assert "Pending" in page and "HTTP 500" in page and "<html" not in page
    assert enqueued == [(DELIVER, delivery.pk)]


def test_redeliver_by_plain_post_goes_back_to_the_endpoint(
    staff_client, endpoint, emit, enqueued, settings, webhook_receiver
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    delivery = delivery_of(emit())
    run_deliveries(enqueued)

    response = staff_client.post(reverse("redeliver_webhook", args=[delivery.pk]), follow=True)
    assert response.redirect_chain == [(reverse("webhook_endpoint", args=[endpoint.pk]), 302)]
    assert "is sent again, with the same id" in response.content.decode()


def test_redeliver_all_failed_by_htmx_answers_the_deliveries_log(
    staff_client,
    endpoint,
    emit,
    enqueued,
    webhook_receiver,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    emit(data={"n": 1})
    emit(data={"n": 2})
    run_deliveries(enqueued)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("redeliver_failed_webhooks", args=[endpoint.pk]),
            headers={"HX-Request": "true"},
        )
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="deliveries">')
    assert "2 failed deliveries sent again." in page
    assert len(enqueued) == 2


def test_the_deliveries_log_filters_by_state_and_by_htmx(staff_client, endpoint, emit, enqueued):
    emit()
    url = reverse("webhook_endpoint", args=[endpoint.pk])
    response = staff_client.get(url + "?state=failed", headers={"HX-Request": "true"})
    assert response.content.decode().lstrip().startswith('<section id="deliveries">')
    assert "No deliveries in this state yet." in response.content.decode()
    assert "output.approved" in staff_client.get(url + "?state=pending").content.decode()


def test_the_nav_shows_webhooks_to_staff_only(staff_client, requester_client):
    assert "Webhooks</a>" in staff_client.get(reverse("my_requests")).content.decode()
    assert "Webhooks</a>" not in requester_client.get(reverse("my_requests")).content.decode()


VIEWS = [
    ("webhook_endpoints", "get", []),
    ("new_webhook_endpoint", "get", []),
    ("new_webhook_endpoint", "post", []),
    ("webhook_endpoint", "get", ["endpoint"]),
    ("webhook_endpoint", "post", ["endpoint"]),
    ("rotate_webhook_secret", "post", ["endpoint"]),
    ("redeliver_failed_webhooks", "post", ["endpoint"]),
    ("redeliver_webhook", "post", ["delivery"]),
]


def view_url(name: str, args: list[str], endpoint: WebhookEndpoint) -> str:
    delivery = WebhookDelivery.objects.create(
        event=WebhookEvent.objects.create(type="output.approved", payload={}), endpoint=endpoint
    )
    ids = {"endpoint": endpoint.pk, "delivery": delivery.pk}
    return reverse(name, args=[ids[arg] for arg in args])


@pytest.mark.parametrize(("name", "method", "args"), VIEWS)
def test_the_webhook_pages_are_for_staff_only(
    requester_client, client, endpoint, name, method, args
):
    url = view_url(name, args, endpoint)
    secret = endpoint.secret
    for visitor in (requester_client, client):
        response = getattr(visitor, method)(url, endpoint_post())
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
    endpoint.refresh_from_db()
    assert endpoint.secret == secret and endpoint.description == "downstream"
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.parametrize(("name", "args"), [(n, a) for n, m, a in VIEWS if m == "post"])
def test_webhook_posts_without_a_csrf_token_are_refused(endpoint, name, args):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("boss", superuser=True))
    response = client.post(view_url(name, args, endpoint), endpoint_post())
    assert response.status_code == 403
    assert b"CSRF" in response.content


# The Django admin


def test_the_admin_lists_webhook_records_and_redelivers(
    staff_client,
    endpoint,
    emit,
    enqueued,
    webhook_receiver,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.WEBHOOK_RETRY_SCHEDULE = []
    webhook_receiver.configure(fail_first=1)
    delivery = delivery_of(emit())
    run_deliveries(enqueued)
    for model in ("webhookendpoint", "webhookevent", "webhookdelivery", "webhookattempt"):
        assert staff_client.get(reverse(f"admin:imagereview_{model}_changelist")).status_code == 200
    assert (
        staff_client.get(
            reverse("admin:imagereview_webhookdelivery_change", args=[delivery.pk])
        ).status_code
        == 200
    )
    failing = staff_client.get(
        reverse("admin:imagereview_webhookendpoint_changelist") + "?failing=yes"
    )
    assert endpoint.url in failing.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:imagereview_webhookdelivery_changelist"),
            {"action": "redeliver", "_selected_action": [delivery.pk]},
        )
    delivery.refresh_from_db()
    assert delivery.state == D.PENDING
    assert enqueued == [(DELIVER, delivery.pk)]


def test_the_admin_refuses_a_private_endpoint_url(staff_client):
    response = staff_client.post(
        reverse("admin:imagereview_webhookendpoint_add"),
        {"url": "http://10.1.2.3/", "description": "", "active": "on"},
    )
    assert response.status_code == 200
    assert "This URL cannot receive webhooks" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


# A real cluster


@pytest.mark.cluster
@pytest.mark.django_db(transaction=True)
def test_every_event_arrives_under_one_id_through_a_killed_cluster_and_faults(
    start_process, webhook_receiver, settings
):
    settings.DISPATCH_LEASE = 3
    env = {
        "DISPATCH_LEASE": "3",
        "WEBHOOK_RETRY_SCHEDULE": ",".join(["1"] * 12),
        "WEBHOOK_TIMEOUT": "2",
        "Q_TIMEOUT": "10",
        "Q_RETRY": "12",
    }
    webhook_receiver.configure(fail_rate=0.3, seed=7, delay=0.05)
    WebhookEndpoint.objects.create(url=webhook_receiver.url, secret=webhook_receiver.secret)
    cluster = start_process("qcluster", **env)
    dispatcher = start_process("dispatch", **env)
    started = time.monotonic()

    def emit_batch(numbers: range) -> None:
        for n in numbers:
            with transaction.atomic():
                webhooks.emit("output.approved", {"n": n})

    def delivered() -> int:
        return WebhookDelivery.objects.filter(state=D.DELIVERED).count()

    emit_batch(range(15))
    wait_for(lambda: len(webhook_receiver.seen()) >= 5, timeout=15, message="first attempts")
    cluster.kill()
    emit_batch(range(15, 30))
    cluster.restart()
    wait_for(
        lambda: delivered() == 30,
        timeout=35,
        interval=0.5,
        message=f"every delivery; logs:\n{cluster.log()[-3000:]}\n{dispatcher.log()[-2000:]}",
    )

    seen = webhook_receiver.seen()
    ids_by_n: dict[int, set[str]] = defaultdict(set)
    for request in seen:
        assert request.verified
        ids_by_n[request.payload["data"]["n"]].add(request.webhook_id)
    assert sorted(ids_by_n) == list(range(30))
    assert all(len(ids) == 1 for ids in ids_by_n.values()), ids_by_n
    accepted = {r.webhook_id for r in webhook_receiver.accepted()}
    assert accepted == set(WebhookEvent.objects.values_list("event_id", flat=True))
    retried = sum(1 for r in seen if r.status != 200)
    print(
        f"\n30 events, {len(seen)} requests ({retried} failed on purpose), "
        f"{WebhookAttempt.objects.count()} attempts logged, {time.monotonic() - started:.1f} s"
    )
