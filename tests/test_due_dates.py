"""Due dates and priority: intake (form, CSV, API, CLI), the queue's orders and filters, the
next item, and the reviewers' digest."""

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from imagereview.actions import notifications
from imagereview.actions.review import request_changes
from imagereview.batch import parse_batch_text
from imagereview.cli import batch as cli_batch
from imagereview.cli.commands import REQUEST_OPTIONS
from imagereview.forms import GenerationRequestForm
from imagereview.models import Asset, ImageRequest, Notification, NotificationPreference
from imagereview.queries.queue_order import queue_page
from imagereview.views import review as review_views
from tests.api_support import conforms, token_client
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

pytestmark = pytest.mark.django_db

P = ImageRequest.Priority
NOW = timezone.now


BASICS = {
    "prompt": "a fox",
    "aspect_ratio": "1:1",
    "resolution": "1K",
    "output_format": "png",
    "variants": "1",
}


def form(**values) -> GenerationRequestForm:
    return GenerationRequestForm(data={**BASICS, **values})


def in_review(requester, prompt: str, **fields) -> ImageRequest:
    return request_in_review(requester, prompt=prompt, variants=1, real_images=False, **fields)


def later(**span) -> datetime:
    return timezone.now() + timedelta(**span)


# Intake.


def test_form_takes_a_due_date_and_a_priority():
    due = later(days=2).replace(second=0, microsecond=0)
    checked = form(due_at=due.strftime("%Y-%m-%dT%H:%M"), priority="urgent")
    assert checked.is_valid(), checked.errors
    fields = checked.request_fields()
    assert (fields["due_at"], fields["priority"]) == (due, P.URGENT)


def test_form_without_due_date_or_priority_means_none_and_normal():
    checked = form()
    assert checked.is_valid(), checked.errors
    assert (checked.request_fields()["due_at"], checked.request_fields()["priority"]) == (
        None,
        P.NORMAL,
    )


def test_form_reads_a_date_alone_as_the_end_of_that_day_in_the_sites_zone(settings):
    settings.TIME_ZONE = "Europe/Paris"
    day = (timezone.now() + timedelta(days=3)).date()
    with timezone.override("Europe/Paris"):
        checked = form(due_at=day.isoformat())
        assert checked.is_valid(), checked.errors
    due = checked.cleaned_data["due_at"].astimezone(ZoneInfo("Europe/Paris"))
    assert (due.date(), due.hour, due.minute) == (day, 23, 59)


def test_form_refuses_a_due_date_in_the_past():
    checked = form(due_at=(timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"))
    assert not checked.is_valid()
    [message] = checked.errors["due_at"]
    assert "has passed: choose a moment in the future" in message


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"due_at": "next friday"}, "due_at", "Enter the due date as YYYY-MM-DD"),
        ({"due_at": "2026-13-45"}, "due_at", "Enter the due date as YYYY-MM-DD"),
        ({"priority": "critical"}, "priority", "Choose a priority: low, normal, high or urgent."),
    ],
)
def test_form_explains_a_bad_due_date_or_priority(values, field, words):
    checked = form(**values)
    assert not checked.is_valid()
    assert words in checked.errors[field][0]


def test_new_request_page_records_due_date_and_priority(requester):
    client = client_for(requester)
    due = later(days=1).replace(second=0, microsecond=0)
    body = {
        "prompt": "a fox",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
        "variants": "1",
        "due_at": due.strftime("%Y-%m-%dT%H:%M"),
        "priority": "high",
    }
    response = client.post(reverse("new_request"), body)
    assert response.status_code == 302
    image_request = ImageRequest.objects.get()
    assert (image_request.due_at, image_request.priority) == (due, P.HIGH)


def test_new_request_page_refuses_a_past_due_date_and_creates_nothing(requester):
    client = client_for(requester)
    body = {**BASICS, "due_at": "2020-01-01"}
    response = client.post(reverse("new_request"), body)
    assert response.status_code == 400
    assert "has passed" in response.content.decode()
    assert not ImageRequest.objects.exists()


def test_new_request_page_offers_the_fields(requester):
    page = client_for(requester).get(reverse("new_request")).content.decode()
    assert 'type="datetime-local" name="due_at"' in page
    assert '<option value="urgent">Urgent</option>' in page


def test_prompt_box_is_not_cut_by_maxlength_but_counted(requester):
    page = client_for(requester).get(reverse("new_request")).content.decode()
    textarea = re.search(r"<textarea[^>]*name=\"prompt\"[^>]*>", page).group(0)
    assert "maxlength" not in textarea
    assert 'data-max-length="10000"' in textarea
    assert "js/prompt_length.js" in page


def test_an_overlong_prompt_is_refused_with_its_length(requester):
    response = client_for(requester).post(
        reverse("new_request"), {**BASICS, "prompt": "x" * 10_050}
    )
    assert response.status_code == 400
    assert "at most 10,000 characters (it has 10050)" in response.content.decode()


def test_csv_takes_due_and_priority_columns():
    due = (timezone.now() + timedelta(days=5)).date()
    check = parse_batch_text(
        f"prompt,due,priority\nfirst,{due.isoformat()},urgent\nsecond,,\nthird,{due} 09:30,low\n"
    )
    assert not check.has_errors, [row.errors for row in check.rows]
    first, second, third = (row.fields for row in check.rows)
    local = timezone.localtime(first["due_at"])
    assert (local.date(), local.hour, local.minute, first["priority"]) == (due, 23, 59, P.URGENT)
    assert (second["due_at"], second["priority"]) == (None, P.NORMAL)
    assert (timezone.localtime(third["due_at"]).hour, third["priority"]) == (9, P.LOW)


def test_csv_explains_bad_due_and_priority_cells_row_by_row():
    check = parse_batch_text(
        "prompt,due,priority,auto_reject\n"
        "late,2020-01-01,,\nvague,soon,,\nloud,,critical,\nunsure,,,maybe\n"
    )
    late, vague, loud, unsure = check.rows
    assert late.invalid_columns == {"due"} and "has passed" in late.errors[0]
    assert vague.invalid_columns == {"due"} and "YYYY-MM-DD" in vague.errors[0]
    assert loud.invalid_columns == {"priority"} and "Choose a priority" in loud.errors[0]
    assert unsure.invalid_columns == {"auto_reject"}
    assert "auto_reject: write yes or no." in unsure.errors


def test_csv_auto_reject_column_sets_the_acceptance_rules():
    check = parse_batch_text("prompt,auto_reject\nstrict,yes\nlenient,no\n")
    strict, lenient = (row.fields["acceptance_rules"]["auto_reject"] for row in check.rows)
    assert strict == ["format", "aspect_ratio", "resolution"] and lenient == []


def test_csv_preview_shows_the_review_policy_it_will_import(requester):
    due = (timezone.now() + timedelta(days=5)).date()
    text = (
        "prompt,variants,required_approvals,approval_quota,auto_publish,auto_reject,due,priority\n"
        f"a fox,3,2,2,yes,yes,{due},urgent\n"
    )
    client = client_for(requester)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("batch.csv", text.encode(), content_type="text/csv")
    page = client.post(reverse("import_batch"), {"file": upload}).content.decode()
    header = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    for column in ("Approvals", "Approved outputs", "Publishing", "Acceptance", "Due", "Priority"):
        assert f"<th>{column}" in header
    row = re.search(r"<tbody>(.*?)</tbody>", page, re.S).group(1)
    assert "Reject failing checks" in row and "Publish on approval" in row
    assert due.isoformat() in row and "Urgent" in row


def test_cli_maps_due_and_priority_to_the_api(tmp_path):
    assert (REQUEST_OPTIONS["due"], REQUEST_OPTIONS["priority"]) == ("due_at", "priority")
    path = tmp_path / "batch.csv"
    path.write_text("prompt,due,priority,auto_reject\na fox,2030-01-02,high,yes\n")
    [row] = cli_batch.read_batch(path)
    assert row.body == {
        "mode": "generate",
        "prompt": "a fox",
        "due_at": "2030-01-02",
        "priority": "high",
        "auto_reject": True,
    }


def test_api_creates_and_shows_due_date_and_priority(requester):
    due = later(days=2).replace(microsecond=0)
    body = {"prompt": "a fox", "due_at": due.isoformat(), "priority": "urgent"}
    client = token_client(requester, "request", "read")
    response = conforms(
        client.post("/api/v1/requests", json.dumps(body), content_type="application/json")
    )
    assert response.status_code == 201, response.content
    assert response.json()["priority"] == "urgent"
    assert datetime.fromisoformat(response.json()["due_at"]) == due
    image_request = ImageRequest.objects.get()
    assert (image_request.due_at, image_request.priority) == (due, P.URGENT)


def test_api_refuses_a_past_due_date(requester):
    body = {"prompt": "a fox", "due_at": "2020-01-01T10:00:00Z"}
    response = conforms(
        token_client(requester, "request").post(
            "/api/v1/requests", json.dumps(body), content_type="application/json"
        )
    )
    assert response.status_code == 422
    assert "has passed" in json.dumps(response.json())
    assert not ImageRequest.objects.exists()


def test_a_revision_inherits_due_date_and_priority(requester, reviewer):
    due = later(hours=5)
    original = in_review(requester, "a fox", due_at=due, priority=P.HIGH)
    output = original.assets.get(kind=Asset.Kind.OUTPUT)
    revision = request_changes(
        output=output,
        reviewer=reviewer,
        prompt="a red fox",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    assert (revision.due_at, revision.priority) == (due, P.HIGH)


# The queue.


@pytest.fixture
def queue(requester) -> dict[str, ImageRequest]:
    """Requests in review, oldest first by creation: the names say their due and priority."""
    made = {
        "none-old": in_review(requester, "none-old"),
        "later": in_review(requester, "later", due_at=later(days=3)),
        "overdue": in_review(requester, "overdue", due_at=later(hours=-2), priority=P.LOW),
        "soon": in_review(requester, "soon", due_at=later(hours=3), priority=P.URGENT),
        "none-new": in_review(requester, "none-new", priority=P.HIGH),
        "high-new": in_review(requester, "high-new", priority=P.HIGH),
    }
    return made


def names(rows) -> list[str]:
    return [row.prompt for row in rows]


def every_page(sort: str, size: int) -> tuple[list[str], int]:
    queryset = ImageRequest.objects.filter(status=ImageRequest.Status.IN_REVIEW)
    seen, cursor, pages = [], "", 0
    while True:
        page = queue_page(queryset, sort=sort, cursor=cursor, size=size)
        seen += names(page.rows)
        pages += 1
        if not page.next_cursor:
            return seen, pages
        cursor = page.next_cursor


@pytest.mark.parametrize("size", [1, 2, 3, 4, 6, 10])
def test_due_order_pages_soonest_first_and_undated_last(queue, size):
    seen, pages = every_page("due", size)
    assert seen == ["overdue", "soon", "later", "none-old", "none-new", "high-new"]
    assert pages == -(-6 // size)


@pytest.mark.parametrize("size", [1, 2, 4, 5])
def test_priority_order_pages_highest_first_then_oldest(queue, size):
    seen, _ = every_page("priority", size)
    assert seen == ["soon", "none-new", "high-new", "none-old", "later", "overdue"]


def test_queue_cursor_that_does_not_decode_starts_afresh(queue):
    queryset = ImageRequest.objects.all()
    for cursor in ("9.abc", "x.", "garbage", "1.!!!"):
        page = queue_page(queryset, sort="due", cursor=cursor, size=2)
        assert page.rows, cursor


def queue_rows(response) -> list[str]:
    return re.findall(r'data-request="(\d+)"', response.content.decode())


def test_queue_page_sorts_by_due_date_across_pages(queue, reviewer_client, monkeypatch):
    monkeypatch.setattr(review_views, "PAGE_SIZE", 4)
    first = reviewer_client.get(reverse("review_queue"), {"sort": "due"})
    ids = {str(r.pk): name for name, r in queue.items()}
    assert [ids[pk] for pk in queue_rows(first)] == ["overdue", "soon", "later", "none-old"]
    after = re.search(r'after=([^"&]+)" rel="next"', first.content.decode()).group(1)
    second = reviewer_client.get(reverse("review_queue"), {"sort": "due", "after": after})
    assert [ids[pk] for pk in queue_rows(second)] == ["none-new", "high-new"]


def test_queue_row_shows_due_and_priority_in_words(queue, reviewer_client):
    page = reviewer_client.get(reverse("review_queue"), {"sort": "due"}).content.decode()
    overdue_row = re.search(
        rf'<li class="queue-item overdue" data-request="{queue["overdue"].pk}">(.*?)</li>',
        page,
        re.S,
    )
    assert overdue_row, "the overdue row has the overdue class"
    assert "Overdue by 2 h" in overdue_row.group(1)
    soon_row = re.search(
        rf'<li class="queue-item" data-request="{queue["soon"].pk}">(.*?)</li>', page, re.S
    ).group(1)
    assert re.search(r"Due in [23] h", soon_row)
    assert '<span class="priority-badge urgent">Urgent priority</span>' in soon_row
    assert "priority-badge" not in overdue_row.group(1)  # low: no badge


def test_queue_filters_overdue_and_priority(queue, reviewer_client):
    ids = {str(r.pk): name for name, r in queue.items()}
    overdue = reviewer_client.get(reverse("review_queue"), {"overdue": "on"})
    assert [ids[pk] for pk in queue_rows(overdue)] == ["overdue"]
    high = reviewer_client.get(reverse("review_queue"), {"priority": "high", "sort": "priority"})
    assert [ids[pk] for pk in queue_rows(high)] == ["soon", "none-new", "high-new"]
    urgent = reviewer_client.get(reverse("review_queue"), {"priority": "urgent"})
    assert [ids[pk] for pk in queue_rows(urgent)] == ["soon"]


def test_queue_htmx_fragment_keeps_the_sort_in_links(queue, reviewer_client):
    response = reviewer_client.get(
        reverse("review_queue"), {"sort": "due", "overdue": "on"}, HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="queue">')
    assert f'/review/{queue["overdue"].pk}/?sort=due&amp;overdue=on"' in page


def test_queue_sorted_by_due_date_is_for_reviewers_only(queue, requester):
    response = client_for(requester).get(reverse("review_queue"), {"sort": "due"})
    assert response.status_code in (302, 403)


def test_next_item_follows_the_due_order(queue, reviewer_client):
    order = ["overdue", "soon", "later", "none-old", "none-new", "high-new"]
    for here, there in zip(order, order[1:] + order[:1], strict=True):
        page = reviewer_client.get(
            reverse("review_detail", args=[queue[here].pk]), {"sort": "due"}
        ).content.decode()
        assert f'data-next="/review/{queue[there].pk}/?sort=due"' in page, here


def test_next_and_previous_item_follow_the_priority_order(queue, reviewer_client):
    order = ["soon", "none-new", "high-new", "none-old", "later", "overdue"]
    for before, here, after in zip(order, order[1:], order[2:], strict=False):
        page = reviewer_client.get(
            reverse("review_detail", args=[queue[here].pk]), {"sort": "priority"}
        ).content.decode()
        assert f'data-next="/review/{queue[after].pk}/?sort=priority"' in page, here
        assert f'data-previous="/review/{queue[before].pk}/?sort=priority"' in page, here


def test_review_page_shows_due_date_and_priority(queue, reviewer_client):
    page = reviewer_client.get(reverse("review_detail", args=[queue["overdue"].pk])).content
    text = page.decode()
    assert '<span class="priority-badge low">Low</span>' in text
    assert re.search(r'<dd id="due">[^<]+<span class="due overdue">\(⚠ overdue by 2 h\)', text)
    undated = reviewer_client.get(reverse("review_detail", args=[queue["none-old"].pk]))
    assert "no due date" in undated.content.decode()


# The digest.


def test_digest_names_past_due_then_urgent_and_high_first(queue, settings):
    settings.PUBLIC_BASE_URL = "https://review.example.test"
    ivy = make_user("ivy", "reviewers")
    NotificationPreference.objects.create(
        user=ivy, review_digest=NotificationPreference.Digest.IMMEDIATE
    )
    NotificationPreference.objects.update_or_create(
        user=queue["soon"].requester,
        defaults={"review_digest": NotificationPreference.Digest.OFF},
    )
    notifications.send_review_digests()
    digest = Notification.objects.get(recipient=ivy, kind=notifications.REVIEW_DIGEST)
    assert digest.subject.endswith(", 1 past due")
    lines = digest.body.splitlines()
    named = [line.split()[1] for line in lines if line.startswith("- #")]
    expected = ["overdue", "soon", "none-new", "high-new"]
    assert named == [f"#{queue[name].pk}" for name in expected]
    assert lines[0] == "Past due: 1"
    assert "overdue by 2 h, low priority" in lines[1]
    assert lines.index("Urgent and high priority:") < lines.index(
        next(line for line in lines if line.startswith("Awaiting review"))
    )
    assert f"https://review.example.test/review/{queue['soon'].pk}/" in digest.body
    assert "none-old" not in digest.body  # no prompts in an email


def test_requester_sees_due_date_and_priority_on_their_request(requester):
    image_request = in_review(requester, "mine", due_at=later(hours=26), priority=P.URGENT)
    page = client_for(requester).get(image_request.get_absolute_url()).content.decode()
    assert '<span class="priority-badge urgent">Urgent</span>' in page
    assert re.search(r'<dd id="due">[^<]+<span class="due">\(due in 1 d [12] h\)', page)
