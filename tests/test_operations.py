"""The operations dashboard: every figure on a data set whose true values are known."""

import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from imagereview.actions import figures
from imagereview.models import (
    Alert,
    Asset,
    CallbackReceipt,
    Decision,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
    RefusedCallbackTally,
)
from imagereview.queries import operations, spending
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

G = Generation.State
R = ImageRequest.Status
V = Decision.Verdict
OUT = Asset.Kind.OUTPUT


def _output(image_request: ImageRequest, variant: int = 1) -> Asset:
    return Asset.objects.get(request=image_request, kind=OUT, generation__variant=variant)


@pytest.fixture
def seeded(db, requester, reviewer, settings) -> SimpleNamespace:
    """Four requests of two requesters, with every kind of waste the figures must count.

    A (alice, generate 1K): two outputs of 18 credits; one approved, one rejected (artefacts).
    B (bob, edit 2K): one output of 24 estimated credits, approved then undone, then changes
    asked (prompt); a failed create (500, 0 credits), its retry billed 24 but not stored, and
    a duplicate task billed 24.
    C (alice, revision of A): one output of 18 credits, approved; in review for three days.
    D (bob): one generation submitted two hours ago, one queued for an hour: stuck.
    """
    settings.CREDIT_PRICE = 0.005
    now = timezone.now().replace(microsecond=0)
    bob = make_user("bob")
    ProviderAccount.objects.create(provider="kie", credits=Decimal(1000))
    a = request_in_review(requester, variants=2, real_images=False)
    b = request_in_review(
        bob, variants=1, mode=ImageRequest.Mode.EDIT, resolution="2K", real_images=False
    )
    c = request_in_review(requester, variants=1, parent=a, revision=2, real_images=False)
    d = ImageRequest.objects.create(requester=bob, prompt="a stuck one", status=R.GENERATING)
    gb = b.generations.get()
    gf = Generation.objects.create(
        request=b, variant=2, state=G.FAILED, failure_code="500", credits=0, provider_task_id="f"
    )
    Generation.objects.create(
        request=b, variant=2, state=G.FAILED, failure_code="store", credits=24,
        failure_message="Result 1 could not be stored: the file is not a readable PNG image",
        provider_task_id="r", retry_of=gf,
    )  # fmt: skip
    gd = Generation.objects.create(
        request=b, variant=1, state=G.STORED, credits=24, provider_task_id="d", duplicate_of=gb
    )
    gs = Generation.objects.create(
        request=d, state=G.SUBMITTED, provider_task_id="task_stuck", attempts=1
    )
    gq = Generation.objects.create(request=d, variant=2, state=G.QUEUED)
    Generation.objects.filter(credits__isnull=False).update(completed_at=now, attempts=1)
    Generation.objects.filter(pk=gf.pk).update(attempts=2)
    Generation.objects.filter(pk=gb.pk).update(credits=24, credits_estimated=True)
    a1, a2 = a.generations.order_by("variant")
    gc = c.generations.get()
    for generation, seconds in ((a1, 30), (a2, 40), (gc, 50)):
        Generation.objects.filter(pk=generation.pk).update(
            submitted_at=now - timedelta(seconds=seconds)
        )
    Generation.objects.filter(pk=gs.pk).update(submitted_at=now - timedelta(hours=2))
    Generation.objects.filter(pk=gq.pk).update(updated_at=now - timedelta(hours=1))

    o1, o2, ob, oc = _output(a, 1), _output(a, 2), _output(b), _output(c)
    Asset.objects.filter(pk=o1.pk).update(
        checks=[{"name": "aspect_ratio", "passed": True}, {"name": "format", "passed": False}]
    )
    Asset.objects.filter(pk=o2.pk).update(checks=[{"name": "aspect_ratio", "passed": False}])
    Decision.objects.create(output=o1, reviewer=reviewer, verdict=V.APPROVE)
    Decision.objects.create(output=o2, reviewer=reviewer, verdict=V.REJECT, reason="artefacts")
    Decision.objects.create(output=ob, reviewer=reviewer, verdict=V.APPROVE, undone_at=now)
    Decision.objects.create(output=ob, reviewer=reviewer, verdict=V.CHANGES, reason="prompt")
    Decision.objects.create(output=oc, reviewer=reviewer, verdict=V.APPROVE)
    ImageRequest.objects.filter(pk=a.pk).update(status=R.APPROVED)
    ImageRequest.objects.filter(pk=b.pk).update(status=R.CHANGES_REQUESTED)
    ImageRequest.objects.filter(pk=c.pk).update(updated_at=now - timedelta(days=3))
    # D's queued create came back twice: once on a 429, once on a 5xx; then an account halt.
    for note in ("retry: 429 rate limited", "retry: 500 server error", "halt: 402 no credits"):
        Event.objects.create(
            subject="generation", generation=gq, request=d, from_state=G.SUBMITTING,
            to_state=G.QUEUED, source="cluster", note=note,
        )  # fmt: skip
    # A waited 100 s in review, B 300 s; C is still waiting.
    for request, entered, left, to in ((a, 300, 200, R.APPROVED), (b, 500, 200, R.REJECTED)):
        Event.objects.create(subject="request", request=request, to_state=R.IN_REVIEW, source="t")
        Event.objects.filter(request=request, to_state=R.IN_REVIEW).update(
            created_at=now - timedelta(seconds=entered)
        )
        Event.objects.create(
            subject="request", request=request, from_state=R.IN_REVIEW, to_state=to, source="t"
        )
        Event.objects.filter(request=request, from_state=R.IN_REVIEW).update(
            created_at=now - timedelta(seconds=left)
        )

    # A1's callback came before it completed (twice); C's came late; two were refused.
    def receipt(task_id: str, received_before: int, delay: int, outcome: str = "accepted"):
        received = now - timedelta(seconds=received_before)
        complete_ms = int((received - timedelta(seconds=delay)).timestamp() * 1000)
        body = json.dumps({"code": 200, "data": {"taskId": task_id, "completeTime": complete_ms}})
        made = CallbackReceipt.objects.create(task_id=task_id, outcome=outcome, body=body)
        CallbackReceipt.objects.filter(pk=made.pk).update(received_at=received)

    receipt(a1.provider_task_id, 10, 4)
    receipt(a1.provider_task_id, 8, 6)
    receipt(gc.provider_task_id, -5, 20)
    receipt("", 3, 0, outcome=CallbackReceipt.Outcome.BAD_TOKEN)
    receipt("", 3, 0, outcome=CallbackReceipt.Outcome.MALFORMED)
    return SimpleNamespace(a=a, b=b, c=c, d=d, gs=gs, gq=gq, gd=gd, bob=bob, now=now)


@pytest.fixture
def week(seeded) -> operations.Period:
    """The last seven days, with the daily figures counted as the dashboard counts them."""
    figures.refresh()
    return operations.period_for("7d", now=seeded.now + timedelta(minutes=1))


@pytest.fixture
def admin(db):
    return make_user("ada", superuser=True)


def test_volume_counts_requests_generations_and_states(seeded, week):
    figures = operations.volume(week)
    today = timezone.localdate(seeded.now)
    assert figures.requests == 4
    assert figures.generations == 9
    assert figures.requests_by_day == [(today, "edit", "2K", 1), (today, "generate", "1K", 3)]
    assert figures.generations_by_day == [(today, "edit", "2K", 4), (today, "generate", "1K", 5)]
    assert figures.request_states[R.IN_REVIEW][0] == 1
    assert figures.request_states[R.GENERATING][0] == 1
    assert R.REJECTED not in figures.request_states  # history, not work under way
    counts = {state: n for state, (n, _) in figures.generation_states.items()}
    assert counts == {"queued": 1, "submitting": 0, "submitted": 1, "succeeded": 0}
    assert figures.generation_states[G.QUEUED][1] == seeded.now - timedelta(hours=1)


def test_stuck_work_finds_generations_and_requests_past_their_time(seeded):
    stuck = operations.stuck_work(now=seeded.now)
    assert stuck.generation_counts == {"queued": 1, "submitting": 0, "submitted": 1, "succeeded": 0}
    assert {g.pk for g in stuck.generations} == {seeded.gs.pk, seeded.gq.pk}
    assert stuck.requests_in_review == 1
    assert [r.pk for r in stuck.oldest_requests] == [seeded.c.pk]


def test_failures_split_provider_codes_from_own_causes(seeded, week):
    figures = operations.failures(week)
    assert figures.failed == 2
    assert figures.provider_codes == {"500": 1}
    assert figures.own_causes == {"decode_failed": 1}
    assert (figures.asked, figures.creates, figures.retries, figures.duplicates) == (7, 8, 1, 1)
    assert figures.retry_rate == pytest.approx(8 / 7)
    assert figures.submit_attempts == 9
    assert (figures.backoffs, figures.rate_limited, figures.halts) == (2, 1, {"402": 1})
    assert sorted(code for _, code, _ in figures.by_day) == ["500", "store"]


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("Result 1 could not be stored: host cdn.example is not in the allowed result hosts",
         "download_refused"),
        ("Result 1 could not be stored: result URL answered HTTP 404", "download_refused"),
        ("Result 1 could not be stored: download timed out after 30s", "download_failed"),
        ("Result 1 could not be stored: the image is damaged or incomplete", "decode_failed"),
    ],
)  # fmt: skip
def test_failures_tell_store_causes_apart(db, requester, message, cause):
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    Generation.objects.create(
        request=image_request, state=G.FAILED, failure_code="store", failure_message=message
    )
    figures = operations.failures(operations.period_for("today"))
    assert figures.own_causes == {cause: 1}


def test_callbacks_tell_callback_from_polling(seeded, week):
    figures = operations.callbacks(week)
    assert (figures.completed, figures.by_callback, figures.missed) == (7, 1, 6)
    assert figures.callback_share == pytest.approx(1 / 7)
    assert figures.refused == {"bad_token": 1, "malformed": 1}
    assert (figures.received, figures.duplicates) == (3, 1)
    assert (figures.delay_p50, figures.delay_p95) == (6, 20)


def test_refused_callbacks_counted_past_those_kept_are_refused_too(seeded, week):
    RefusedCallbackTally.objects.create(
        generation=seeded.gs, outcome="bad_token", window_start=seeded.now, count=40,
        last_at=seeded.now,
    )  # fmt: skip
    RefusedCallbackTally.objects.create(
        generation=seeded.gs, outcome="bad_token", count=7, last_at=seeded.now,
        window_start=week.start - timedelta(hours=1),
    )  # before the period  # fmt: skip
    assert operations.callbacks(week).refused == {"bad_token": 41, "malformed": 1}


def test_latency_by_day_is_the_median_of_submitted_to_completed(seeded, week):
    assert operations.latency_by_day(week) == [(timezone.localdate(seeded.now), 40, 3)]


def test_cost_counts_all_spent_credits_per_approved_image(seeded, week):
    figures = spending.cost(week, now=seeded.now + timedelta(minutes=1))
    assert figures.balance == 1000
    assert (figures.total.credits, figures.total.estimated) == (126, 24)
    assert figures.total.approved == 2
    assert figures.total.per_approved == Decimal("63.00")
    assert figures.total.money == Decimal("0.63")
    assert figures.total.money_per_approved == Decimal("0.32")
    by = {name: {line.key: line for line in lines} for name, lines in figures.groups.items()}
    assert by["mode"]["generate"].credits == 54
    assert by["mode"]["generate"].per_approved == Decimal("27.00")
    assert by["mode"]["edit"].credits == 72
    assert by["mode"]["edit"].estimated == 24
    assert by["mode"]["edit"].per_approved is None
    assert {k: line.credits for k, line in by["resolution"].items()} == {"1K": 54, "2K": 72}
    assert by["requester"]["alice"].per_approved == Decimal("27.00")
    assert by["requester"]["bob"].approved == 0
    [this_week] = figures.groups["week"]
    assert (this_week.credits, this_week.approved, this_week.per_approved) == (126, 2, 63)
    assert figures.burn_by_day[-1] == (timezone.localdate(seeded.now), 126)
    assert figures.recent_daily_burn == 18
    assert figures.days_left == 55.6


def test_review_counts_standing_verdicts_and_loss(seeded, week):
    figures = spending.review(week)
    assert (figures.decided, figures.approved, figures.rejected, figures.changes) == (4, 2, 1, 1)
    assert figures.approval_rate == 0.5
    assert figures.undone == 1
    assert [(line.verdict, line.reason, line.outputs, line.credits) for line in figures.loss] == [
        ("changes", "prompt", 1, 24),
        ("reject", "artefacts", 1, 18),
    ]
    assert (figures.ready_to_decided_p50, figures.ready_to_decided_p95) == (100, 300)
    assert figures.waiting == 1
    assert figures.checks == {"aspect_ratio": (1, 2), "format": (1, 1)}


def test_period_for_custom_falls_back_when_reversed(seeded):
    period = operations.period_for("custom", start=seeded.now, end=seeded.now - timedelta(1))
    assert period.key == "7d"


def test_period_for_custom_spans_at_most_a_year(seeded):
    period = operations.period_for(
        "custom", start=seeded.now - timedelta(days=5000), end=seeded.now
    )
    assert len(period.days) == 367


def test_dashboard_custom_period_includes_the_end_day(seeded, admin):
    today = timezone.localdate(seeded.now)
    url = f"/operations/?period=custom&start={today - timedelta(days=1)}&end={today}"
    response = client_for(admin).get(url)
    assert response.context["period"].key == "custom"
    assert response.context["volume"].requests == 4
    url = f"/operations/?period=custom&start={today - timedelta(days=3)}&end={today - timedelta(1)}"
    assert client_for(admin).get(url).context["volume"].requests == 0


def test_dashboard_shows_figures_to_staff(seeded, admin):
    Alert.objects.create(kind="low_credits", subject="kie", title="Credits run low")
    response = client_for(admin).get("/operations/?period=7d")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'hx-trigger="every 10s"' in body
    assert "Credits run low" in body
    assert 'href="/operations/alerts/"' in body
    assert 'data-figure="cost-per-approved">63.00<' in body
    assert body.count("<svg") == 3
    assert "<title>" in body


def test_dashboard_htmx_returns_the_figures_fragment(seeded, admin):
    response = client_for(admin).get("/operations/?period=today", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="figures"')
    assert "<html" not in body


def test_dashboard_refuses_requesters(seeded, requester):
    client = client_for(requester)
    assert client.get("/operations/").status_code == 403
    assert client.get("/operations/cost.csv").status_code == 403
    response = client.post(f"/operations/generations/{seeded.gs.pk}/cancel/")
    assert response.status_code == 302
    assert Generation.objects.get(pk=seeded.gs.pk).state == G.SUBMITTED


def test_cancel_fails_a_stuck_generation_audited(seeded, admin):
    response = client_for(admin).post(f"/operations/generations/{seeded.gs.pk}/cancel/")
    assert response.status_code == 302
    generation = Generation.objects.get(pk=seeded.gs.pk)
    assert (generation.state, generation.failure_code) == (G.FAILED, "cancelled")
    event = Event.objects.get(generation=generation, to_state=G.FAILED)
    assert (event.actor, event.source) == (admin, "admin")


def test_retry_replaces_a_stuck_generation(
    seeded, admin, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(
            f"/operations/generations/{seeded.gs.pk}/retry/", headers={"HX-Request": "true"}
        )
    assert response.headers["HX-Redirect"] == "/operations/"
    retry = Generation.objects.get(retry_of=seeded.gs)
    assert retry.state == G.QUEUED
    assert Generation.objects.get(pk=seeded.gs.pk).failure_code == "cancelled"
    assert ImageRequest.objects.get(pk=seeded.d.pk).status == R.GENERATING
    assert ("imagereview.tasks.submit_generation", retry.pk) in enqueued


def test_refresh_enqueues_the_next_step_audited(
    seeded, admin, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(admin).post(f"/operations/generations/{seeded.gs.pk}/refresh/")
    assert ("imagereview.tasks.refresh_generation", seeded.gs.pk) in enqueued
    assert Event.objects.filter(generation=seeded.gs, note="refresh asked", actor=admin).exists()


def test_unknown_action_is_not_found(seeded, admin):
    response = client_for(admin).post(f"/operations/generations/{seeded.gs.pk}/explode/")
    assert response.status_code == 404


def test_cost_csv_neutralises_formulas(seeded, admin):
    seeded.bob.username = "=HYPERLINK(1)"
    seeded.bob.save()
    response = client_for(admin).get("/operations/cost.csv?period=7d")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[2][:2] == ["all", "all"]
    assert rows[2][2:] == ["126.00", "24.00", "0.63", "2", "63.00", "0.32"]
    assert ["requester", "'=HYPERLINK(1)"] in [row[:2] for row in rows]


def test_dashboard_queries_do_not_grow_with_the_data(seeded, admin):
    client = client_for(admin)
    client.get("/operations/?period=30d")
    with CaptureQueriesContext(connection) as before:
        client.get("/operations/?period=30d")
    for extra in range(3):
        request_in_review(seeded.bob, prompt=f"more {extra}", variants=2, real_images=False)
    with CaptureQueriesContext(connection) as after:
        assert client.get("/operations/?period=30d").status_code == 200
    # Both views count today's figures again (its requests changed moments ago): the same
    # fixed number of queries whatever the day holds.
    assert len(after) == len(before) < 60


def test_dashboard_figures_link_to_lists_that_open(seeded, admin):
    client = client_for(admin)
    body = client.get("/operations/?period=7d").content.decode()
    hrefs = set(re.findall(r'href="(/(?:admin|library|review)/[^"#]*)"', body))
    assert len(hrefs) > 15
    for href in sorted(hrefs):
        response = client.get(href.replace("&amp;", "&"))
        assert response.status_code == 200, href
        assert "e=1" not in response.get("Location", ""), href


def test_per_day_counts_each_local_day_apart(requester, settings):
    settings.TIME_ZONE = "America/New_York"
    with timezone.override("America/New_York"):
        now = timezone.now()
        image_request = ImageRequest.objects.create(requester=requester, prompt="days")
        moments = [now - timedelta(days=days, hours=hours) for days, hours in
                   ((0, 0), (0, 1), (1, 0), (3, 5), (3, 6), (3, 7), (9, 0))]  # fmt: skip
        for variant, moment in enumerate(moments, start=1):
            generation = Generation.objects.create(request=image_request, variant=variant)
            Generation.objects.filter(pk=generation.pk).update(queued_at=moment)
        period = operations.period_for("7d", now=now + timedelta(seconds=1))
        expected = {}
        for moment in moments:
            if moment >= period.start:
                day = timezone.localtime(moment).date()
                expected[day] = expected.get(day, 0) + 1
        found = operations.per_day(Generation.objects.all(), "queued_at", period)
        assert dict(found) == expected
        assert sum(expected.values()) == 6  # the one nine days ago is outside the period
