"""The daily figures stay equal to a full recount as work, decisions and undos happen."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from imagereview import actions
from imagereview.actions import figures
from imagereview.actions.undo import undo_decision
from imagereview.models import (
    DailyFigure,
    Decision,
    FigureWatermark,
    Generation,
    ImageRequest,
)
from tests.conftest import make_user
from tests.factories import request_in_review

V = Decision.Verdict
G = Generation.State


def rows(found) -> set[tuple]:
    """Figure rows as comparable tuples, credits at the stored precision."""
    cent = Decimal("0.0001")
    return {
        (
            row.day,
            row.mode,
            row.resolution,
            row.requester_id,
            row.figure,
            row.label,
            row.count,
            row.failed,
            Decimal(row.credits).quantize(cent),
            Decimal(row.estimated).quantize(cent),
        )
        for row in found
    }


def stored() -> set[tuple]:
    return rows(DailyFigure.objects.all())


def recounted() -> set[tuple]:
    return rows(figures.recount(figures.all_days()))


def made_days_ago(image_request: ImageRequest, days: int) -> ImageRequest:
    """Move a request and everything about it back in time, as if it happened then."""
    moment = timezone.now() - timedelta(days=days)
    ImageRequest.objects.filter(pk=image_request.pk).update(created_at=moment, updated_at=moment)
    Generation.objects.filter(request=image_request).update(updated_at=moment)
    Decision.objects.filter(output__request=image_request).update(created_at=moment)
    image_request.refresh_from_db()
    return image_request


@pytest.fixture
def history(requester, reviewer):
    """Requests on three earlier days, one output approved, counted once in full."""
    bob = make_user("bob")
    four = made_days_ago(request_in_review(requester, variants=2, real_images=False), 4)
    three = request_in_review(bob, variants=3, real_images=False, resolution="2K", approval_quota=3)
    last_output = three.assets.filter(kind="output").order_by("pk").last()
    actions.decide(output=last_output, reviewer=reviewer, verdict=V.APPROVE)
    three = made_days_ago(three, 3)
    two = request_in_review(requester, variants=1, real_images=False)
    actions.decide(output=two.assets.get(kind="output"), reviewer=reviewer, verdict=V.APPROVE)
    two = made_days_ago(two, 2)
    assert figures.refresh() == 3  # the first run counts every day
    assert stored() == recounted()
    return {"four": four, "three": three, "two": two}


def test_first_run_counts_every_figure(history):
    day = figures.day_of(history["four"].created_at)
    by_figure = {(row[4], row[5]): row for row in stored() if row[0] == day}
    assert by_figure[("requests", "")][6] == 1
    assert by_figure[("spend", "")][8] == 36  # two generations of 18 credits, day four
    approved = [row for row in stored() if row[4] == "verdict"]
    assert sorted((row[5], row[6], row[2]) for row in approved) == [
        (V.APPROVE, 1, "1K"),
        (V.APPROVE, 1, "2K"),
    ]


def test_refresh_counts_only_the_days_touched_and_equals_a_recount(history, reviewer):
    four, three, two = history["four"], history["three"], history["two"]
    outputs = list(three.assets.filter(kind="output").order_by("pk"))
    # Decisions today on a request made three days ago: one made and undone, one standing.
    other = make_user("olga", "reviewers")
    taken_back = actions.decide(output=outputs[0], reviewer=other, verdict=V.APPROVE)
    undo_decision(decision_id=taken_back.pk, reviewer=other)
    actions.decide(output=outputs[1], reviewer=reviewer, verdict=V.REJECT, reason="artefacts")
    # An approval made two days ago, taken back now (and nothing else on that day).
    Decision.objects.filter(output__request=two).update(undone_at=timezone.now())
    # A retry of day four's work, billed and failed.
    Generation.objects.create(
        request=four, variant=1, state=G.FAILED, failure_code="500", credits=Decimal("7.5"),
        credits_estimated=True,
    )  # fmt: skip
    # A new request today.
    request_in_review(make_user("carol"), variants=1, real_images=False)
    before = stored()
    assert before != recounted()  # the changes matter to the figures

    assert figures.refresh() == 4  # days four, three, two and today
    assert stored() == recounted()
    undone = [row for row in stored() if row[4] == "undone"]
    assert sorted((row[0], row[6]) for row in undone) == [
        (figures.day_of(three.created_at), 1),
        (figures.day_of(two.created_at), 1),
    ]


def test_a_run_with_nothing_touched_writes_nothing(history):
    FigureWatermark.objects.update(refreshed_at=timezone.now())
    before = list(DailyFigure.objects.values_list("pk", flat=True))
    assert figures.refresh() == 0
    assert list(DailyFigure.objects.values_list("pk", flat=True)) == before


def test_another_time_zone_rebuilds_every_day(history, settings):
    FigureWatermark.objects.update(refreshed_at=timezone.now())
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: some requests change day
    with timezone.override("Pacific/Kiritimati"):
        assert figures.refresh() >= 3
        assert stored() == recounted()
        assert FigureWatermark.objects.get().time_zone == "Pacific/Kiritimati"


def test_full_refresh_after_rows_written_behind_its_back(history):
    # A bulk load with its own timestamps is invisible to the watermark: --full recounts it.
    made_days_ago(request_in_review(make_user("dave"), variants=1, real_images=False), 10)
    FigureWatermark.objects.update(refreshed_at=timezone.now())
    assert figures.refresh() == 0
    assert stored() != recounted()
    figures.refresh(full=True)
    assert stored() == recounted()
