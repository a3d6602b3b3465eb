"""The review queue as the data grows: bounded status counts, the flagged filter on the
request's own flag, and keyset pages through requests made at the same instant."""

import io

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from imagereview import actions
from imagereview.models import Asset, Generation, ImageRequest
from imagereview.queries.pages import keyset_page
from imagereview.queries.queue import status_counts
from imagereview.views.review import queue_cursor
from tests.factories import request_in_review

R = ImageRequest.Status


def in_review(requester, count: int, **fields) -> list[ImageRequest]:
    """`count` requests in review, rows only (no generations or outputs)."""
    return ImageRequest.objects.bulk_create(
        ImageRequest(requester=requester, prompt=f"item {n}", status=R.IN_REVIEW, **fields)
        for n in range(count)
    )


def test_status_counts_are_exact_below_the_bound(requester):
    in_review(requester, 3)
    ImageRequest.objects.create(requester=requester, prompt="still generating")
    counts = {c.status: c for c in status_counts()}
    assert (counts[R.IN_REVIEW].count, counts[R.IN_REVIEW].more) == (3, False)
    assert (counts[R.GENERATING].count, counts[R.GENERATING].shown) == (1, "1")
    assert (counts[R.APPROVED].count, counts[R.APPROVED].more) == (0, False)
    assert list(counts) == [status for status, _ in R.choices]


def test_status_counts_stop_at_the_bound(requester):
    in_review(requester, 5)
    counts = {c.status: c for c in status_counts(limit=4)}
    assert (counts[R.IN_REVIEW].count, counts[R.IN_REVIEW].more) == (4, True)
    assert counts[R.IN_REVIEW].shown == "4+"
    counts = {c.status: c for c in status_counts(limit=5)}
    assert (counts[R.IN_REVIEW].count, counts[R.IN_REVIEW].more) == (5, False)


def test_queue_shows_a_count_past_the_bound_as_a_floor(requester, reviewer_client):
    in_review(requester, 1001)
    body = reviewer_client.get(reverse("review_queue")).content.decode()
    assert 'data-status="in_review" title="more than 1000">1,000+</span>' in body
    assert 'data-status="approved">0</span>' in body


def test_queue_shows_an_exact_count_at_the_bound(requester, reviewer_client):
    in_review(requester, 1000)
    body = reviewer_client.get(reverse("review_queue")).content.decode()
    assert 'data-status="in_review">1,000</span>' in body


def test_flagged_filter_lists_the_requests_marked_flagged(requester, reviewer_client):
    plain = request_in_review(requester, variants=1, real_images=False)
    flagged = request_in_review(requester, variants=1, real_images=False)
    ImageRequest.objects.filter(pk=flagged.pk).update(flagged=True)
    response = reviewer_client.get(reverse("review_queue"), {"flagged": "on"})
    assert [r.pk for r in response.context["image_requests"]] == [flagged.pk]
    body = reviewer_client.get(reverse("review_queue")).content.decode()
    assert f'class="queue-item flagged" data-request="{flagged.pk}"' in body
    assert f'class="queue-item" data-request="{plain.pk}"' in body


def square_jpeg() -> bytes:
    """A 1K square JPEG: wrong for a 16:9 2K PNG request, right for a 1:1 1K JPEG one."""
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (30, 60, 90)).save(out, "JPEG")
    return out.getvalue()


def test_storing_an_output_that_fails_a_check_flags_its_request(requester, kie, sandbox):
    image_request = actions.create_request(
        requester=requester,
        prompt="a wide landscape",
        aspect_ratio="16:9",
        resolution="2K",
        output_format="png",
        variants=1,
    )
    generation = image_request.generations.get()
    hosted = kie.upload_file(
        content=square_jpeg(),
        file_name="wrong.jpg",
        content_type="image/jpeg",
        upload_path="results",
    )
    Generation.objects.filter(pk=generation.pk).update(
        state=Generation.State.SUCCEEDED,
        provider_task_id="t-wrong",
        result_urls=[hosted.download_url],
    )
    actions.store_outputs(generation_id=generation.pk, client=kie)
    assert Asset.objects.get(kind="output").flagged
    image_request.refresh_from_db()
    assert image_request.flagged


def test_storing_an_output_that_passes_its_checks_leaves_its_request_unflagged(
    requester, kie, sandbox
):
    image_request = actions.create_request(
        requester=requester,
        prompt="a square",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="jpg",
        variants=1,
    )
    generation = image_request.generations.get()
    hosted = kie.upload_file(
        content=square_jpeg(),
        file_name="right.jpg",
        content_type="image/jpeg",
        upload_path="results",
    )
    Generation.objects.filter(pk=generation.pk).update(
        state=Generation.State.SUCCEEDED,
        provider_task_id="t-right",
        result_urls=[hosted.download_url],
    )
    actions.store_outputs(generation_id=generation.pk, client=kie)
    assert not Asset.objects.get(kind="output").flagged
    image_request.refresh_from_db()
    assert not image_request.flagged


@pytest.mark.parametrize("newest_first", [False, True])
def test_keyset_pages_visit_requests_of_one_instant_once_each_in_order(requester, newest_first):
    """Rows that share the leading key are told apart by the id: the seek on the leading key
    alone must not skip or repeat them."""
    same_instant = timezone.now()
    made = in_review(requester, 7)
    ImageRequest.objects.filter(pk__in=[r.pk for r in made[2:6]]).update(created_at=same_instant)
    expected = [
        r.pk for r in ImageRequest.objects.order_by("created_at", "id").only("pk", "created_at")
    ]
    if newest_first:
        expected.reverse()
    queryset = ImageRequest.objects.filter(status=R.IN_REVIEW)
    seen, cursor = [], ""
    while True:
        page = keyset_page(queryset, newest_first=newest_first, cursor=cursor, size=2)
        seen += [r.pk for r in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_queue_deep_page_starts_just_past_the_cursor(requester, reviewer_client):
    items = [request_in_review(requester, variants=1, real_images=False) for _ in range(3)]
    response = reviewer_client.get(reverse("review_queue"), {"after": queue_cursor(items[0])})
    assert [r.pk for r in response.context["image_requests"]] == [items[1].pk, items[2].pk]
