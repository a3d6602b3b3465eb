"""Circuit openings on the operations dashboard: halts of the account, their codes and spans."""

import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from imagereview.actions import close_circuit, open_circuit
from imagereview.models import Event
from imagereview.queries import operations
from tests.conftest import client_for, make_user

NOW = timezone.now().replace(microsecond=0)


def _at(moment: datetime) -> None:
    """Date the account event just recorded at `moment`."""
    latest = Event.objects.filter(subject="account").order_by("-id").first()
    Event.objects.filter(pk=latest.pk).update(created_at=moment)


def halt(moment: datetime, code: int, reason: str) -> None:
    open_circuit(code=code, reason=reason)
    _at(moment)


def resume(moment: datetime, note: str, actor=None) -> None:
    close_circuit(note=note, actor=actor)
    _at(moment)


@pytest.fixture
def admin(db):
    return make_user("ada", superuser=True)


@pytest.fixture
def halts(admin) -> operations.Period:
    """Four halts around a period of the last five hours (ending now).

    Long before it: 402 for an hour, not in the period. Before it and into it: 401, opened two
    hours before the start and closed by a credit check 30 min into it. Inside it: 402 for
    20 min, resumed by an admin. Last: 433, opened an hour ago and still open.
    """
    start = NOW - timedelta(hours=5)
    halt(start - timedelta(hours=9), 402, "credits ran out")
    resume(start - timedelta(hours=8), "credit check answered 900 credits")
    halt(start - timedelta(hours=2), 401, "the API key was refused")
    resume(start + timedelta(minutes=30), "credit check answered 800 credits")
    halt(start + timedelta(hours=2), 402, "credits ran out")
    resume(start + timedelta(hours=2, minutes=20), "resumed by an admin", actor=admin)
    halt(NOW - timedelta(hours=1), 433, "daily limit reached")
    return operations.Period(start, NOW, "custom")


def test_openings_overlapping_the_period_with_codes_and_durations(halts):
    figures = operations.circuit_openings(halts, now=NOW)

    assert [(o.code, o.reason) for o in figures.openings] == [
        ("401", "the API key was refused"),
        ("402", "credits ran out"),
        ("433", "daily limit reached"),
    ]
    before, inside, still_open = figures.openings
    assert before.opened_at == halts.start - timedelta(hours=2)
    assert before.closed_at == halts.start + timedelta(minutes=30)
    assert before.duration == timedelta(hours=2, minutes=30)
    assert (before.closed_by, before.close_note) == ("", "credit check answered 800 credits")
    assert inside.duration == timedelta(minutes=20)
    assert (inside.closed_by, inside.close_note) == ("ada", "resumed by an admin")
    assert still_open.closed_at is None
    assert still_open.duration == timedelta(hours=1)
    assert figures.count == 3
    # 30 min of the first inside the period, 20 min, and the last hour.
    assert figures.halted == timedelta(hours=1, minutes=50)


def test_a_halt_open_still_counts_up_to_now(halts):
    later = NOW + timedelta(minutes=15)
    period = operations.Period(halts.start, later, "custom")

    figures = operations.circuit_openings(period, now=later)

    assert figures.openings[-1].duration == timedelta(hours=1, minutes=15)
    assert figures.halted == timedelta(hours=2, minutes=5)


def test_a_past_period_sees_halts_that_span_it_and_outlast_it(halts):
    # Within the 401 halt from 30 min after it opened, to an hour before it closed.
    first = halts.start - timedelta(hours=2)
    spanned = operations.Period(
        first + timedelta(minutes=30), first + timedelta(hours=1, minutes=30)
    )

    [opening] = operations.circuit_openings(spanned, now=NOW).openings
    assert (opening.code, opening.opened_at) == ("401", first)
    assert opening.closed_at == halts.start + timedelta(minutes=30)
    assert operations.circuit_openings(spanned, now=NOW).halted == timedelta(hours=1)

    # From before the 402 halt to 10 min into it: it closed after the period ended.
    outlasted = operations.Period(
        halts.start + timedelta(hours=1), halts.start + timedelta(hours=2, minutes=10)
    )
    figures = operations.circuit_openings(outlasted, now=NOW)
    [opening] = figures.openings
    assert opening.closed_at == halts.start + timedelta(hours=2, minutes=20)
    assert opening.duration == timedelta(minutes=20)
    assert figures.halted == timedelta(minutes=10)


def test_no_halts_no_openings(db, django_assert_num_queries):
    with django_assert_num_queries(1):
        figures = operations.circuit_openings(operations.period_for("30d"))

    assert (figures.count, figures.openings, figures.halted) == (0, [], timedelta())


def test_dashboard_lists_openings_with_links_that_open(halts, admin):
    client = client_for(admin)
    body = client.get("/operations/?period=7d").content.decode()
    table = body[body.index('id="circuit-openings"') :]
    table = table[: table.index("</table>")]

    assert "the API key was refused" in table
    assert "still open" in table
    assert "ada: resumed by an admin" in table
    assert "the cluster: credit check answered 800 credits" in table
    hrefs = re.findall(r'href="(/admin/imagereview/event/[^"]*)"', body)
    assert len(hrefs) >= 5
    for href in hrefs:
        response = client.get(href.replace("&amp;", "&"))
        assert response.status_code == 200, href
        assert "e=1" not in response.get("Location", ""), href


def test_opening_link_lists_the_events_of_that_halt(halts, admin):
    client = client_for(admin)
    body = client.get("/operations/?period=7d").content.decode()
    table = body[body.index('id="circuit-openings"') :]
    [row] = [row for row in table.split("<tr>") if "the API key was refused" in row]
    first_link = re.search(r'href="(/admin/imagereview/event/[^"]*)"', row).group(1)

    listed = client.get(first_link.replace("&amp;", "&")).context["cl"].result_list

    assert [(e.from_state, e.to_state) for e in listed] == [("halted", "open"), ("open", "halted")]
    assert listed[1].note == "401: the API key was refused"
