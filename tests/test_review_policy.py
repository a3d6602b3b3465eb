"""Review rules: quorum and quota, self-approval, undo, bulk decisions, queue filters."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import Asset, Decision, ImageRequest
from imagereview.roles import REVIEWERS
from tests.conftest import client_for, make_user
from tests.factories import request_in_review, small_picture, stored_asset

R = ImageRequest.Status


def outputs_of(image_request):
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def test_two_approvals_each_and_a_quota_of_two(requester, reviewer):
    second = make_user("vic", REVIEWERS)
    item = request_in_review(
        requester, variants=3, required_approvals=2, approval_quota=2, real_images=False
    )
    a, b, c = outputs_of(item)
    actions.decide(output=a, reviewer=reviewer, verdict="approve")
    actions.decide(output=a, reviewer=second, verdict="approve")
    actions.decide(output=b, reviewer=reviewer, verdict="approve")
    item.refresh_from_db()
    assert item.status == R.IN_REVIEW  # b has one approval of two
    actions.decide(output=b, reviewer=second, verdict="approve")
    item.refresh_from_db()
    assert item.status == R.APPROVED


def test_a_request_is_rejected_once_its_quota_is_out_of_reach(requester, reviewer):
    item = request_in_review(requester, variants=3, approval_quota=2, real_images=False)
    a, b, _ = outputs_of(item)
    actions.decide(output=a, reviewer=reviewer, verdict="reject", reason="artefacts")
    item.refresh_from_db()
    assert item.status == R.IN_REVIEW
    actions.decide(output=b, reviewer=reviewer, verdict="reject", reason="prompt")
    item.refresh_from_db()
    assert item.status == R.REJECTED


def test_self_approval_is_refused_unless_the_setting_allows_it(settings, db):
    maker = make_user("sam", REVIEWERS)
    item = request_in_review(maker, variants=1, real_images=False)
    output = outputs_of(item)[0]
    for verdict in ("approve", "reject"):
        with pytest.raises(actions.DecisionRefused, match="someone else"):
            actions.decide(output=output, reviewer=maker, verdict=verdict, reason="other")
    settings.REVIEW_FORBID_SELF_APPROVAL = False
    item = request_in_review(maker, variants=1, real_images=False)
    actions.decide(output=outputs_of(item)[0], reviewer=maker, verdict="approve")


def test_undo_within_the_window_reopens_the_request(requester, reviewer, reviewer_client):
    item = request_in_review(requester, variants=1, real_images=False)
    decision = actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="approve")
    item.refresh_from_db()
    assert item.status == R.APPROVED
    reviewer_client.post(reverse("undo_decision", args=[decision.pk]))
    item.refresh_from_db()
    decision.refresh_from_db()
    assert item.status == R.IN_REVIEW and decision.undone_at is not None
    assert actions.latest_verdicts(item) == {}


def test_undo_is_refused_late_or_for_someone_else(requester, reviewer):
    item = request_in_review(requester, variants=2, approval_quota=2, real_images=False)
    decision = actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="approve")
    with pytest.raises(actions.DecisionRefused, match="your own"):
        actions.undo_decision(decision_id=decision.pk, reviewer=requester)
    Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(actions.DecisionRefused, match="Too late"):
        actions.undo_decision(decision_id=decision.pk, reviewer=reviewer)


def test_request_changes_submits_the_next_version_at_once(
    requester, reviewer, reviewer_client, django_capture_on_commit_callbacks, enqueued
):
    item = request_in_review(requester, variants=2, prompt="a cat", real_images=False)
    output = outputs_of(item)[0]
    data = {
        "prompt": "a cat wearing a hat",
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "output_format": "jpg",
        "variants": "1",
        "comment": "add a hat",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(
            reverse("request_changes", args=[output.pk]), data, headers={"HX-Request": "true"}
        )
    assert response.status_code == 200 and response["HX-Redirect"]
    revision = ImageRequest.objects.get(parent=item)
    assert (revision.revision, revision.prompt, revision.aspect_ratio) == (
        2,
        "a cat wearing a hat",
        "16:9",
    )
    assert revision.requester == requester
    # The revision's generation is due at once, for the dispatcher to send with its slot.
    assert [job[0] for job in enqueued] == ["imagereview.tasks.notify_request_decided"]
    assert revision.generations.get().next_attempt_at <= timezone.now()
    item.refresh_from_db()
    assert item.status == R.CHANGES_REQUESTED
    decision = Decision.objects.get(verdict="changes")
    assert decision.revision == revision and decision.comment == "add a hat"


def test_request_changes_can_start_an_edit_of_the_output(requester, reviewer):
    item = request_in_review(requester, variants=1, real_images=False)
    output = outputs_of(item)[0]
    revision = actions.request_changes(
        output=output,
        reviewer=reviewer,
        prompt="brighter",
        aspect_ratio="auto",
        resolution="1K",
        output_format="png",
        variants=1,
        edit_from_output=True,
    )
    assert revision.mode == "edit"
    assert revision.assets.get(kind="reference").sha256 == output.sha256


def test_bulk_approve_and_reject(requester, reviewer_client):
    first, second, third = (
        request_in_review(requester, variants=1, real_images=False) for _ in range(3)
    )
    reviewer_client.post(
        reverse("bulk_decide"), {"verdict": "approve", "requests": [first.pk, second.pk]}
    )
    reviewer_client.post(reverse("bulk_decide"), {"verdict": "reject", "requests": [third.pk]})
    statuses = [ImageRequest.objects.get(pk=r.pk).status for r in (first, second, third)]
    assert statuses == [R.APPROVED, R.APPROVED, R.IN_REVIEW]  # a reject needs a reason
    reviewer_client.post(
        reverse("bulk_decide"), {"verdict": "reject", "reason": "unsafe", "requests": [third.pk]}
    )
    assert ImageRequest.objects.get(pk=third.pk).status == R.REJECTED


def bulk(client, **data) -> list[tuple[str, str]]:
    """Post a bulk decision; the messages it leaves, as (level, text)."""
    response = client.post(reverse("bulk_decide"), data, follow=True)
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def test_bulk_approve_stops_once_a_multi_variant_request_settles(requester, reviewer_client):
    vic = make_user("vic", REVIEWERS)
    once = request_in_review(requester, variants=3, real_images=False)
    twice = request_in_review(requester, variants=2, required_approvals=2, real_images=False)
    actions.decide(output=outputs_of(twice)[1], reviewer=vic, verdict="approve")
    said = bulk(reviewer_client, verdict="approve", requests=[once.pk, twice.pk])
    assert said == [
        ("success", f"#{once.pk}: 1 output approved; the request is approved."),
        ("success", f"#{twice.pk}: 2 outputs approved; the request is approved."),
    ]
    assert Decision.objects.filter(output__request=once).count() == 1


def test_bulk_reject_rejects_the_undecided_outputs_with_the_reason(requester, reviewer_client):
    item = request_in_review(requester, variants=4, approval_quota=2, real_images=False)
    said = bulk(
        reviewer_client, verdict="reject", reason="unsafe", comment="no", requests=[item.pk]
    )
    assert said == [("success", f"#{item.pk}: 3 outputs rejected; the request is rejected.")]
    assert set(Decision.objects.values_list("verdict", "reason", "comment")) == {
        ("reject", "unsafe", "no")
    }


def test_bulk_refuses_outputs_decided_by_someone_else_since_the_queue(
    requester, reviewer, reviewer_client
):
    vic = make_user("vic", REVIEWERS)
    item = request_in_review(requester, variants=3, approval_quota=2, real_images=False)
    first, second, _ = outputs_of(item)
    seen = reviewer_client.get(reverse("review_queue")).context["seen_decision_id"]
    assert (
        f'name="seen_decision_id" value="{seen}"'
        in reviewer_client.get(reverse("review_queue")).content.decode()
    )
    actions.decide(output=first, reviewer=vic, verdict="reject", reason="artefacts")
    said = bulk(
        reviewer_client,
        verdict="reject",
        reason="other",
        requests=[item.pk],
        seen_decision_id=seen,
    )
    assert (
        "error",
        f"#{item.pk}: vic decided variant 1 (reject) after the queue was shown, "
        "so you did not decide it. Open the request to review their decision.",
    ) in said
    assert list(Decision.objects.filter(reviewer=reviewer).values_list("output", flat=True)) == [
        second.pk
    ]  # two rejects leave one output, short of the quota of two


def test_queue_filters_and_pages_by_keyset(requester, reviewer_client, db):
    other = make_user("olga")
    items = [request_in_review(requester, variants=1, real_images=False) for _ in range(30)]
    edit = request_in_review(other, variants=1, mode="edit", real_images=False)
    Asset.objects.filter(request=edit, kind="output").update(flagged=True)
    ImageRequest.objects.filter(pk=edit.pk).update(flagged=True)  # as storing it would
    url = reverse("review_queue")

    first_page = reviewer_client.get(url).context
    assert [r.pk for r in first_page["image_requests"]] == [r.pk for r in items[:24]]
    second_page = reviewer_client.get(url, {"after": first_page["next_cursor"]}).context
    assert [r.pk for r in second_page["image_requests"]] == [r.pk for r in items[24:]] + [edit.pk]
    assert second_page["next_cursor"] == ""

    for query in ({"mode": "edit"}, {"requester": "olga"}, {"flagged": "on"}):
        found = reviewer_client.get(url, query).context["image_requests"]
        assert [r.pk for r in found] == [edit.pk]
    newest = reviewer_client.get(url, {"sort": "newest"}).context["image_requests"]
    assert newest[0].pk == edit.pk
    assert reviewer_client.get(url, {"after": "garbage"}).status_code == 200


def count_queries(client, url, *, htmx: bool = False) -> int:
    headers = {"HX-Request": "true"} if htmx else {}
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, headers=headers).status_code == 200
    return len(captured)


def test_page_queries_stay_constant_as_the_data_grows(requester, reviewer, reviewer_client):
    item = request_in_review(requester, variants=2, real_images=False)
    for _ in range(3):
        request_in_review(requester, variants=2, real_images=False)
    asker = client_for(requester)
    pages = [
        (reviewer_client, reverse("review_queue"), False),
        (reviewer_client, reverse("review_queue"), True),
        (reviewer_client, reverse("review_detail", args=[item.pk]), False),
        (reviewer_client, reverse("review_detail", args=[item.pk]), True),
        (asker, reverse("my_requests"), False),
        (asker, reverse("request_detail", args=[item.pk]), False),
    ]
    small = [count_queries(client, url, htmx=htmx) for client, url, htmx in pages]
    for _ in range(12):
        extra = request_in_review(requester, variants=4, real_images=False)
        actions.decide(
            output=outputs_of(extra)[0], reviewer=reviewer, verdict="reject", reason="other"
        )
    actions.decide(output=outputs_of(item)[0], reviewer=reviewer, verdict="reject", reason="other")
    # Three versions before the item and three after it, and references on the item.
    first = request_in_review(requester, variants=1, real_images=False)
    older = [first]
    for _ in range(2):
        older.append(request_in_review(requester, variants=1, parent=older[-1], real_images=False))
    ImageRequest.objects.filter(pk=item.pk).update(parent=older[-1])
    newer = [item]
    for _ in range(3):
        newer.append(request_in_review(requester, variants=1, parent=newer[-1], real_images=False))
    for index in range(3):
        stored_asset(item, small_picture(), kind=Asset.Kind.REFERENCE, index=index)
    large = [count_queries(client, url, htmx=htmx) for client, url, htmx in pages]
    assert large == small
    chain = reviewer_client.get(reverse("review_detail", args=[item.pk])).context["versions"]
    assert [v["request"].pk for v in chain] == [r.pk for r in older] + [r.pk for r in newer]


def test_undo_leaves_a_request_decided_by_its_other_decisions(requester, reviewer):
    vic = make_user("vic", REVIEWERS)
    item = request_in_review(requester, variants=2, real_images=False)
    first, second = outputs_of(item)
    rejected = actions.decide(output=second, reviewer=reviewer, verdict="reject", reason="other")
    actions.decide(output=first, reviewer=vic, verdict="approve")
    actions.undo_decision(decision_id=rejected.pk, reviewer=reviewer)
    item.refresh_from_db()
    assert item.status == R.APPROVED  # vic's approval still meets the quota


def test_undoing_a_reject_can_complete_the_approvals(requester, reviewer):
    vic, sam = make_user("vic", REVIEWERS), make_user("sam", REVIEWERS)
    item = request_in_review(requester, variants=2, required_approvals=2, real_images=False)
    first = outputs_of(item)[0]
    actions.decide(output=first, reviewer=vic, verdict="approve")
    rejected = actions.decide(output=first, reviewer=reviewer, verdict="reject", reason="other")
    actions.decide(output=first, reviewer=sam, verdict="approve")
    item.refresh_from_db()
    assert item.status == R.IN_REVIEW
    actions.undo_decision(decision_id=rejected.pk, reviewer=reviewer)
    item.refresh_from_db()
    assert item.status == R.APPROVED


def test_undo_is_offered_on_the_next_item_after_advancing(requester, reviewer_client):
    first, second = (request_in_review(requester, variants=1, real_images=False) for _ in "12")
    response = reviewer_client.post(
        reverse("decide", args=[outputs_of(first)[0].pk]),
        {"verdict": "approve"},
        headers={"HX-Request": "true"},
    )
    assert response["HX-Redirect"] == reverse("review_detail", args=[second.pk])
    decision = Decision.objects.get()
    page = reviewer_client.get(response["HX-Redirect"]).content.decode()
    assert reverse("undo_decision", args=[decision.pk]) in page
    assert f"You approved variant 1 of #{first.pk}." in page

    response = reviewer_client.post(
        reverse("undo_decision", args=[decision.pk]),
        {"page": second.pk},
        headers={"HX-Request": "true"},
    )
    assert response["HX-Redirect"] == reverse("review_detail", args=[first.pk])
    assert ImageRequest.objects.get(pk=first.pk).status == R.IN_REVIEW


def test_the_queue_offers_undo_of_the_last_decision(requester, reviewer, reviewer_client):
    item = request_in_review(requester, variants=1, real_images=False)
    decision = actions.decide(
        output=outputs_of(item)[0], reviewer=reviewer, verdict="reject", reason="unsafe"
    )
    page = reviewer_client.get(reverse("review_queue")).content.decode()
    assert f"You rejected variant 1 of #{item.pk}." in page
    response = reviewer_client.post(reverse("undo_decision", args=[decision.pk]))
    assert response["Location"] == reverse("review_detail", args=[item.pk])
    assert ImageRequest.objects.get(pk=item.pk).status == R.IN_REVIEW


def test_next_and_previous_follow_the_filtered_and_sorted_queue(requester, reviewer_client):
    a, b, c, d = (
        request_in_review(requester, variants=1, mode=mode, real_images=False)
        for mode in ("generate", "edit", "generate", "edit")
    )
    page = reviewer_client.get(reverse("review_detail", args=[b.pk]), {"mode": "edit"})
    assert (page.context["next_request"], page.context["previous_request"]) == (d, None)
    assert f'href="/review/{d.pk}/?mode=edit" id="next-item"' in page.content.decode()
    newest = {"mode": "edit", "sort": "newest"}
    page = reviewer_client.get(reverse("review_detail", args=[b.pk]), newest)
    assert (page.context["next_request"], page.context["previous_request"]) == (d, d)
    page = reviewer_client.get(reverse("review_detail", args=[d.pk]), newest)
    assert (page.context["next_request"], page.context["previous_request"]) == (b, None)
    assert (
        f'href="/review/{d.pk}/?mode=edit&amp;sort=newest"'
        in reviewer_client.get(reverse("review_queue"), newest).content.decode()
    )

    response = reviewer_client.post(
        reverse("decide", args=[outputs_of(b)[0].pk]) + "?mode=edit",
        {"verdict": "approve"},
        headers={"HX-Request": "true"},
    )
    assert response["HX-Redirect"] == f"/review/{d.pk}/?mode=edit"


def test_next_skips_what_is_not_the_reviewers_to_open(
    requester, reviewer, reviewer_client, settings
):
    vic = make_user("vic", REVIEWERS)
    start = request_in_review(requester, variants=1, real_images=False)
    claimed = request_in_review(requester, variants=1, real_images=False)
    actions.claim(claimed, vic)
    own = request_in_review(reviewer, variants=1, real_images=False)
    decided = request_in_review(requester, variants=2, required_approvals=2, real_images=False)
    for output in outputs_of(decided):
        actions.decide(output=output, reviewer=reviewer, verdict="approve")
    stale = request_in_review(requester, variants=1, real_images=False)
    actions.claim(stale, vic)
    ImageRequest.objects.filter(pk=stale.pk).update(
        claimed_at=timezone.now() - actions.claims.CLAIM_TTL - timedelta(seconds=1)
    )
    assert ImageRequest.objects.get(pk=decided.pk).status == R.IN_REVIEW
    page = reviewer_client.get(reverse("review_detail", args=[start.pk])).context
    assert page["next_request"] == stale
    page = reviewer_client.get(reverse("review_detail", args=[stale.pk])).context
    assert (page["next_request"], page["previous_request"]) == (start, start)
    settings.REVIEW_FORBID_SELF_APPROVAL = False
    page = reviewer_client.get(reverse("review_detail", args=[start.pk])).context
    assert page["next_request"] == own


def test_the_queue_shows_who_else_is_reviewing_an_item(requester, reviewer, reviewer_client):
    vic = make_user("vic", REVIEWERS)
    theirs, mine, stale = (
        request_in_review(requester, variants=1, real_images=False) for _ in "123"
    )
    actions.claim(theirs, vic)
    actions.claim(mine, reviewer)
    actions.claim(stale, vic)
    ImageRequest.objects.filter(pk=stale.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    body = reviewer_client.get(reverse("review_queue")).content.decode()
    assert body.count("Being reviewed by vic") == 1
    row = body[body.index(f'data-request="{theirs.pk}"') :]
    assert row.index("Being reviewed by vic") < row.index("</li>")


def test_request_changes_keeps_what_was_typed_on_an_error(requester, reviewer_client):
    item = request_in_review(requester, variants=2, prompt="a cat", real_images=False)
    first, second = outputs_of(item)
    data = {
        "prompt": "",
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "output_format": "jpg",
        "variants": "1",
        "edit_from_output": "on",
        "comment": "add a hat",
    }
    response = reviewer_client.post(
        reverse("request_changes", args=[second.pk]), data, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    body = response.content.decode()
    card = body[body.index(f'id="output-{second.pk}"') :]
    assert card.index('<details class="changes" open>') < card.index("</details>")
    assert "Enter a prompt: describe the image you want." in card
    assert '<option value="16:9" selected>' in card and "add a hat</textarea>" in card
    assert f'id="changes-{second.pk}-edit_from_output" checked' in card
    assert body.count('<details class="changes" open>') == 1
    assert not ImageRequest.objects.filter(parent=item).exists()
    without_htmx = reviewer_client.post(reverse("request_changes", args=[second.pk]), data)
    assert (
        without_htmx.status_code == 422 and "add a hat</textarea>" in without_htmx.content.decode()
    )


def test_an_edit_of_an_output_too_big_for_a_reference_is_refused(
    requester, reviewer_client, monkeypatch
):
    from imagereview import media

    item = request_in_review(requester, variants=1, prompt="a cat", real_images=True)
    (output,) = outputs_of(item)
    data = {
        "prompt": "a cat in a hat",
        "aspect_ratio": "1:1",
        "resolution": "1K",
        "output_format": "png",
        "variants": "1",
        "edit_from_output": "on",
    }
    monkeypatch.setattr(media, "MAX_REFERENCE_BYTES", 100)
    response = reviewer_client.post(reverse("request_changes", args=[output.pk]), data)
    assert response.status_code == 422
    assert f"Output {output.pk} of request #{item.pk}" in response.content.decode()
    assert not ImageRequest.objects.filter(parent=item).exists()

    monkeypatch.undo()
    response = reviewer_client.post(reverse("request_changes", args=[output.pk]), data)
    assert ImageRequest.objects.get(parent=item).mode == ImageRequest.Mode.EDIT
