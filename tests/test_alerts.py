from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from imagereview import tasks
from imagereview.actions import alerts
from imagereview.actions.alerts import acknowledge_alert, check_drift, raise_alert, resolve_alert
from imagereview.actions.integrity import random_sample
from imagereview.models import (
    Alert,
    Asset,
    CallbackReceipt,
    Decision,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
)
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

G = Generation.State
EARLIER = timedelta(days=2)


@pytest.fixture
def staff(db):
    return make_user("ada", superuser=True)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture
def image_request(requester) -> ImageRequest:
    return ImageRequest.objects.create(requester=requester, prompt="a lighthouse at dusk")


@pytest.fixture
def edit_request(requester) -> ImageRequest:
    return ImageRequest.objects.create(
        requester=requester, prompt="make it night", mode=ImageRequest.Mode.EDIT
    )


@pytest.fixture(autouse=True)
def no_storage_sample(settings) -> None:
    """Rows made here have no files: only the storage tests re-hash anything."""
    settings.DRIFT_STORAGE_SAMPLE = 0


def unresolved(kind: str, subject: str = "") -> list[Alert]:
    return list(Alert.objects.filter(kind=kind, subject=subject).exclude(state="resolved"))


def completed(image_request: ImageRequest, count: int, *, took: float, ago: timedelta) -> list:
    """`count` generations that took `took` seconds and completed `ago` before now."""
    done = timezone.now() - ago
    start = done - timedelta(seconds=took)
    return [
        Generation.objects.create(
            request=image_request,
            state=G.STORED,
            provider_task_id=f"task_{ago.total_seconds():.0f}_{took:.0f}_{i}",
            submitted_at=start,
            completed_at=done,
        )
        for i in range(count)
    ]


def outcome_events(image_request: ImageRequest, succeeded: int, failed: int, *, ago=None) -> None:
    for to_state in [G.SUCCEEDED] * succeeded + [G.FAILED] * failed:
        generation = Generation.objects.create(request=image_request, state=to_state)
        event = Event.objects.create(
            request=image_request,
            generation=generation,
            subject="generation",
            from_state=G.SUBMITTED,
            to_state=to_state,
            source="cluster",
        )
        if ago:
            Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - ago)


def outputs(image_request: ImageRequest, count: int, *, flagged: int, ago=None) -> list[Asset]:
    made = [
        Asset.objects.create(
            kind=Asset.Kind.OUTPUT,
            request=image_request,
            file="outputs/none.png",
            sha256="0" * 64,
            bytes=1,
            width=1,
            height=1,
            content_type="image/png",
            flagged=i < flagged,
        )
        for i in range(count)
    ]
    if ago:
        Asset.objects.filter(pk__in=[a.pk for a in made]).update(created_at=timezone.now() - ago)
    return made


# The alert itself


def test_raise_alert_opens_once_while_the_condition_lasts(db):
    first = raise_alert(kind="provider_latency", title="slow", detail="2x", value=20)
    again = raise_alert(kind="provider_latency", title="slower", detail="3x", value=30)
    assert again.pk == first.pk
    again.refresh_from_db()
    assert (again.state, again.title, again.value) == ("open", "slower", 30)
    assert again.last_seen_at > first.opened_at
    assert Event.objects.filter(subject="alert", to_state="open").count() == 1


def test_raise_alert_after_resolution_opens_a_new_alert(db):
    first = raise_alert(kind="circuit_open", subject="kie", title="halted", detail="402")
    resolved = resolve_alert(kind="circuit_open", subject="kie")
    assert resolved.pk == first.pk and resolved.state == "resolved" and resolved.resolved_at
    second = raise_alert(kind="circuit_open", subject="kie", title="halted", detail="402")
    assert second.pk != first.pk
    states = Event.objects.filter(subject="alert").values_list("from_state", "to_state")
    assert sorted(states) == [("", "open"), ("", "open"), ("open", "resolved")]


def test_resolve_alert_without_an_unresolved_one_does_nothing(db):
    assert resolve_alert(kind="provider_latency") is None
    assert not Event.objects.exists()


def test_acknowledge_alert_records_who_and_stays_acknowledged(staff):
    alert = raise_alert(kind="broken_urls", title="broken", detail="3 links")
    acknowledged = acknowledge_alert(alert_id=alert.pk, actor=staff)
    assert acknowledged.state == "acknowledged"
    assert acknowledged.acknowledged_by == staff and acknowledged.acknowledged_at
    event = Event.objects.get(subject="alert", to_state="acknowledged")
    assert (event.from_state, event.actor, event.source) == ("open", staff, "admin")
    # Raised again while it lasts: refreshed, still acknowledged, never reopened.
    raise_alert(kind="broken_urls", title="broken", detail="4 links", value=4)
    alert.refresh_from_db()
    assert (alert.state, alert.value) == ("acknowledged", 4)
    assert acknowledge_alert(alert_id=alert.pk, actor=staff).state == "acknowledged"
    assert Event.objects.filter(subject="alert", to_state="acknowledged").count() == 1


def test_acknowledge_alert_of_an_unknown_id_raises(db):
    with pytest.raises(Alert.DoesNotExist):
        acknowledge_alert(alert_id=404, actor=None)


# Detectors


def test_provider_latency_raises_once_and_resolves(image_request):
    completed(image_request, 10, took=10, ago=EARLIER)
    recent = completed(image_request, 10, took=60, ago=timedelta(minutes=5))
    assert check_drift()["provider_latency"] == "raised"
    assert check_drift()["provider_latency"] == "ongoing"
    [alert] = unresolved("provider_latency")
    assert (alert.value, alert.baseline, alert.threshold) == (60, 10, 20)
    assert "6.0x" in alert.detail and alert.link.startswith("/admin/")
    for generation in recent:
        Generation.objects.filter(pk=generation.pk).update(
            submitted_at=generation.completed_at - timedelta(seconds=12)
        )
    assert check_drift()["provider_latency"] == "resolved"
    assert not unresolved("provider_latency")


def test_provider_latency_with_few_samples_is_not_judged(image_request):
    completed(image_request, 10, took=10, ago=EARLIER)
    completed(image_request, 3, took=60, ago=timedelta(minutes=5))
    assert check_drift()["provider_latency"] == "skipped"
    assert not Alert.objects.exists()


def test_provider_failures_raise_once_and_resolve(image_request):
    outcome_events(image_request, 19, 1, ago=EARLIER)
    outcome_events(image_request, 6, 4)
    assert check_drift()["provider_failures"] == "raised"
    assert check_drift()["provider_failures"] == "ongoing"
    [alert] = unresolved("provider_failures")
    assert alert.value == pytest.approx(0.4) and alert.baseline == pytest.approx(0.05)
    outcome_events(image_request, 30, 0)
    assert check_drift()["provider_failures"] == "resolved"


def test_callback_delivery_under_the_floor_raises_and_resolves(image_request, settings):
    settings.KIE_CALLBACKS = True
    generations = completed(image_request, 10, took=10, ago=timedelta(minutes=5))
    for generation in generations[:2]:
        CallbackReceipt.objects.create(
            generation=generation, task_id=generation.provider_task_id, outcome="accepted"
        )
    assert check_drift()["callback_delivery"] == "raised"
    assert check_drift()["callback_delivery"] == "ongoing"
    assert unresolved("callback_delivery")[0].value == pytest.approx(0.2)
    for generation in generations[2:]:
        CallbackReceipt.objects.create(
            generation=generation, task_id=generation.provider_task_id, outcome="accepted"
        )
    assert check_drift()["callback_delivery"] == "resolved"


def test_acceptance_failures_raise_by_mode_and_resolve(image_request):
    outputs(image_request, 20, flagged=1, ago=EARLIER)
    recent = outputs(image_request, 10, flagged=5)
    outcome = check_drift()
    assert outcome["acceptance_failures:generate"] == "raised"
    assert outcome["acceptance_failures:edit"] == "skipped"
    assert check_drift()["acceptance_failures:generate"] == "ongoing"
    [alert] = unresolved("acceptance_failures", "generate")
    assert alert.value == pytest.approx(0.5) and "generate" in alert.title
    Asset.objects.filter(pk__in=[a.pk for a in recent]).update(flagged=False)
    assert check_drift()["acceptance_failures:generate"] == "resolved"


def test_rejections_raise_by_mode_and_resolve(edit_request, reviewer):
    def decide(assets, verdicts, ago=None):
        made = [
            Decision.objects.create(output=asset, reviewer=reviewer, verdict=verdict)
            for asset, verdict in zip(assets, verdicts, strict=True)
        ]
        if ago:
            Decision.objects.filter(pk__in=[d.pk for d in made]).update(
                created_at=timezone.now() - ago
            )
        return made

    assets = outputs(edit_request, 10, flagged=0)
    decide(assets, ["approve"] * 9 + ["reject"], ago=EARLIER)
    recent = decide(assets, ["approve"] * 5 + ["reject"] * 5)
    assert check_drift()["rejections:edit"] == "raised"
    assert check_drift()["rejections:edit"] == "ongoing"
    assert unresolved("rejections", "edit")[0].baseline == pytest.approx(0.1)
    # Undone decisions no longer count.
    Decision.objects.filter(pk__in=[d.pk for d in recent[5:]]).update(undone_at=timezone.now())
    decide(assets[5:], ["approve"] * 5)
    assert check_drift()["rejections:edit"] == "resolved"


def test_tracking_gaps_raise_on_an_orphan_callback_and_resolve(image_request):
    CallbackReceipt.objects.create(task_id="task_nobody_holds", outcome="foreign")
    assert check_drift()["tracking_gaps"] == "raised"
    assert check_drift()["tracking_gaps"] == "ongoing"
    assert "1 callback(s)" in unresolved("tracking_gaps")[0].detail
    Generation.objects.create(
        request=image_request, state=G.SUBMITTED, provider_task_id="task_nobody_holds"
    )
    assert check_drift()["tracking_gaps"] == "resolved"


def test_tracking_gaps_count_unanswered_creates_and_duplicates(image_request, settings):
    settings.RECONCILE_SUBMITTING_GRACE = 180
    stuck = Generation.objects.create(request=image_request, state=G.SUBMITTING)
    Generation.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(minutes=10))
    original = Generation.objects.create(request=image_request, provider_task_id="task_a")
    Generation.objects.create(
        request=image_request, provider_task_id="task_b", duplicate_of=original
    )
    assert check_drift()["tracking_gaps"] == "raised"
    [alert] = unresolved("tracking_gaps")
    assert alert.value == 2 and "submitting" in alert.link
    settings.DRIFT_TRACKING_GAPS = 2
    assert check_drift()["tracking_gaps"] == "resolved"


def test_broken_urls_raise_on_dead_result_links_and_resolve(image_request):
    dead = Generation.objects.create(
        request=image_request,
        state=G.FAILED,
        failure_code="store",
        failure_message="Result 1 could not be stored: result URL answered HTTP 410; no fresh link",
    )
    Generation.objects.create(
        request=image_request,
        state=G.FAILED,
        failure_code="store",
        failure_message="Result 1 could not be stored: not an image",
    )
    assert check_drift()["broken_urls"] == "raised"
    assert check_drift()["broken_urls"] == "ongoing"
    assert unresolved("broken_urls")[0].value == 1
    Generation.objects.filter(pk=dead.pk).update(updated_at=timezone.now() - EARLIER)
    assert check_drift()["broken_urls"] == "resolved"


def test_broken_urls_count_references_expired_in_use(edit_request):
    now = timezone.now()
    [reference] = outputs(edit_request, 1, flagged=0)
    Asset.objects.filter(pk=reference.pk).update(
        kind=Asset.Kind.REFERENCE, provider_url_expires_at=now - timedelta(minutes=1)
    )
    Generation.objects.create(request=edit_request, state=G.FAILED, failure_code="422")
    assert check_drift()["broken_urls"] == "raised"
    Asset.objects.filter(pk=reference.pk).update(provider_url_expires_at=now + timedelta(days=1))
    assert check_drift()["broken_urls"] == "resolved"


def test_storage_mismatch_raises_on_a_sampled_missing_file_and_resolves(requester, settings):
    settings.DRIFT_STORAGE_SAMPLE = 20
    image_request = request_in_review(requester, real_images=False)
    output = image_request.assets.filter(kind=Asset.Kind.OUTPUT).first()
    content = output.file.read()
    output.file.close()
    output.file.storage.delete(output.file.name)
    assert check_drift()["storage_mismatch"] == "raised"
    assert check_drift()["storage_mismatch"] == "ongoing"
    [alert] = unresolved("storage_mismatch")
    assert alert.severity == "critical" and f"id__in={output.pk}" in alert.link
    output.file.storage.save(output.file.name, ContentFile(content))
    assert check_drift()["storage_mismatch"] == "resolved"


def test_circuit_open_raises_critical_and_resolves(db):
    account = ProviderAccount.objects.create(
        circuit_open=True,
        circuit_code="402",
        circuit_reason="Insufficient credits.",
        circuit_opened_at=timezone.now(),
    )
    assert check_drift()["circuit_open:kie"] == "raised"
    assert check_drift()["circuit_open:kie"] == "ongoing"
    [alert] = unresolved("circuit_open", "kie")
    assert alert.severity == "critical" and "402" in alert.title
    ProviderAccount.objects.filter(pk=account.pk).update(circuit_open=False)
    assert check_drift()["circuit_open:kie"] == "resolved"


def test_low_credits_raise_on_days_left_and_resolve(image_request, settings):
    settings.DRIFT_LOW_CREDIT_DAYS = 3
    account = ProviderAccount.objects.create(credits=Decimal(2000))
    for generation in completed(image_request, 7, took=10, ago=timedelta(days=1)):
        Generation.objects.filter(pk=generation.pk).update(credits=1000)
    # 7000 credits in 7 days: 1000 a day, 2 days left.
    assert check_drift()["low_credits:kie"] == "raised"
    assert check_drift()["low_credits:kie"] == "ongoing"
    assert unresolved("low_credits", "kie")[0].value == pytest.approx(2)
    ProviderAccount.objects.filter(pk=account.pk).update(credits=Decimal(5000))
    assert check_drift()["low_credits:kie"] == "resolved"


def test_low_credits_raise_under_the_price_of_a_few_images(db):
    ProviderAccount.objects.create(credits=Decimal(100))
    assert check_drift()["low_credits:kie"] == "raised"
    assert unresolved("low_credits", "kie")[0].severity == "critical"


def test_check_drift_keeps_going_when_a_detector_fails(image_request, monkeypatch):
    def broken(now):
        raise RuntimeError("boom")

    monkeypatch.setattr("imagereview.actions.alerts.DETECTORS", [broken])
    assert check_drift() == {"broken": "error"}


# verify_storage


def test_verify_storage_reports_missing_and_altered_files_and_exits_non_zero(requester):
    image_request = request_in_review(requester, real_images=False, variants=3)
    missing, altered, intact = image_request.assets.filter(kind=Asset.Kind.OUTPUT)
    missing.file.storage.delete(missing.file.name)
    with altered.file.storage.open(altered.file.name, "wb") as stored:
        stored.write(b"not what was stored")
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_storage", stdout=out)
    assert failure.value.returncode == 1
    assert "1 missing and 1 altered" in str(failure.value)
    report = out.getvalue()
    assert f"missing: asset {missing.pk}" in report and f"altered: asset {altered.pk}" in report
    assert f"asset {intact.pk}" not in report
    [alert] = unresolved("storage_mismatch")
    assert "all stored files" in alert.detail


def test_verify_storage_on_intact_files_succeeds_and_resolves_the_alert(requester):
    request_in_review(requester, real_images=False)
    raise_alert(kind="storage_mismatch", title="mismatch", detail="before")
    out = StringIO()
    call_command("verify_storage", stdout=out)
    assert "All 2 files checked are as recorded" in out.getvalue()
    assert not unresolved("storage_mismatch")


def test_verify_storage_sample_checks_that_many(requester):
    request_in_review(requester, real_images=False, variants=3)
    out = StringIO()
    call_command("verify_storage", "--sample", "2", stdout=out)
    assert "All 2 files checked" in out.getvalue()


# Pages


def test_alert_list_shows_open_acknowledged_and_resolved(staff_client, staff):
    raise_alert(kind="provider_latency", title="Latency doubled", detail="median 40 s")
    acked = raise_alert(kind="broken_urls", title="Dead links", detail="3")
    acknowledge_alert(alert_id=acked.pk, actor=staff)
    raise_alert(kind="circuit_open", subject="kie", title="Halted earlier", detail="402")
    resolve_alert(kind="circuit_open", subject="kie")
    response = staff_client.get(reverse("alerts"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Latency doubled" in page and "Dead links" in page and "Halted earlier" in page
    assert page.count(">Acknowledge</button>") == 1


def test_alert_list_refuses_non_staff(reviewer_client):
    response = reviewer_client.get(reverse("alerts"))
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_acknowledge_refuses_non_staff(reviewer_client):
    alert = raise_alert(kind="provider_latency", title="slow", detail="2x")
    response = reviewer_client.post(reverse("acknowledge_alert", args=[alert.pk]))
    assert response.status_code == 302 and "/admin/login/" in response.url
    alert.refresh_from_db()
    assert alert.state == "open"


def test_acknowledge_rejects_get(staff_client):
    alert = raise_alert(kind="provider_latency", title="slow", detail="2x")
    assert staff_client.get(reverse("acknowledge_alert", args=[alert.pk])).status_code == 405


def test_acknowledge_redirects_back_to_the_list(staff_client, staff):
    alert = raise_alert(kind="provider_latency", title="slow", detail="2x")
    response = staff_client.post(reverse("acknowledge_alert", args=[alert.pk]))
    assert response.status_code == 302 and response.url == reverse("alerts")
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == staff


def test_acknowledge_by_htmx_answers_the_alert(staff_client):
    alert = raise_alert(kind="provider_latency", title="slow", detail="2x")
    response = staff_client.post(
        reverse("acknowledge_alert", args=[alert.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    fragment = response.content.decode()
    assert f'id="alert-{alert.pk}"' in fragment and "Acknowledged" in fragment
    assert "<html" not in fragment and ">Acknowledge</button>" not in fragment


def test_acknowledge_of_an_unknown_alert_is_not_found(staff_client):
    assert staff_client.post(reverse("acknowledge_alert", args=[404])).status_code == 404


def test_admin_acknowledges_selected_alerts(staff_client, staff):
    alert = raise_alert(kind="provider_latency", title="slow", detail="2x")
    response = staff_client.post(
        reverse("admin:imagereview_alert_changelist"),
        {"action": "acknowledge", "_selected_action": [alert.pk]},
    )
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == staff
    assert (
        staff_client.get(reverse("admin:imagereview_alert_change", args=[alert.pk])).status_code
        == 200
    )


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_verify_storage_shows_a_counter_on_a_terminal(requester):
    request_in_review(requester, real_images=False)
    out = Terminal()
    call_command("verify_storage", stdout=out)
    assert "\rChecked 1/2" in out.getvalue() and "\rChecked 2/2" in out.getvalue()


def test_raise_alert_racing_another_process_refreshes_its_alert(db, monkeypatch):
    theirs = raise_alert(kind="tracking_gaps", title="gaps", detail="1", value=1)
    real = alerts._unresolved
    calls = []

    def first_sees_nothing(kind: str, subject: str):
        calls.append(kind)
        return None if len(calls) == 1 else real(kind, subject)

    monkeypatch.setattr(alerts, "_unresolved", first_sees_nothing)
    ours = raise_alert(kind="tracking_gaps", title="gaps", detail="2", value=2)
    assert ours.pk == theirs.pk and ours.value == 2
    assert Alert.objects.count() == 1
    assert Event.objects.filter(subject="alert").count() == 1


def test_every_alert_links_to_a_page_that_opens(image_request, staff_client, settings):
    settings.DRIFT_STORAGE_SAMPLE = 5
    completed(image_request, 10, took=10, ago=EARLIER)
    completed(image_request, 10, took=60, ago=timedelta(minutes=5))
    outcome_events(image_request, 2, 8)
    outputs(image_request, 10, flagged=9)
    CallbackReceipt.objects.create(task_id="task_nobody_holds", outcome="accepted")
    Generation.objects.create(
        request=image_request, state=G.FAILED, failure_code="store", failure_message="HTTP 404"
    )
    ProviderAccount.objects.create(credits=Decimal(1), circuit_open=True, circuit_code="402")
    check_drift()
    kinds = set(Alert.objects.values_list("kind", flat=True))
    assert kinds >= {
        "provider_latency",
        "provider_failures",
        "callback_delivery",
        "acceptance_failures",
        "tracking_gaps",
        "broken_urls",
        "storage_mismatch",
        "circuit_open",
        "low_credits",
    }
    for alert in Alert.objects.all():
        assert staff_client.get(alert.link).status_code == 200, alert.link


def test_random_sample_picks_distinct_assets_up_to_the_size(image_request):
    made = outputs(image_request, 5, flagged=0)
    assets = Asset.objects.all()
    for _ in range(20):
        sample = random_sample(assets, 3)
        assert len({asset.pk for asset in sample}) == 3
    assert {asset.pk for asset in random_sample(assets, 10)} == {asset.pk for asset in made}
    assert random_sample(Asset.objects.none(), 3) == []


def test_scheduled_check_drift_task_raises_alerts(db):
    ProviderAccount.objects.create(circuit_open=True, circuit_code="401")
    tasks.check_drift()
    assert unresolved("circuit_open", "kie")
