"""Review stages: a request passes through its workflow's stages, each decided by its group."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.actions import notifications
from imagereview.actions.review import DecisionRefused
from imagereview.batch import import_rows, parse_batch
from imagereview.models import (
    Decision,
    Event,
    ImageRequest,
    Notification,
    NotificationPreference,
    Stage,
    WebhookEvent,
    Workflow,
)
from imagereview.roles import REQUESTERS, REVIEWERS
from tests.api_support import token_client
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

R = ImageRequest.Status
V = Decision.Verdict
PARAMS = {"aspect_ratio": "1:1", "resolution": "1K", "output_format": "png", "variants": 2}


@pytest.fixture
def creative(db) -> Group:
    return Group.objects.create(name="Creative")


@pytest.fixture
def legal(db) -> Group:
    return Group.objects.create(name="Brand and legal")


@pytest.fixture
def workflow(creative, legal) -> Workflow:
    """Creative (1 approval, 1 output), then Brand and legal (1 approval, 1 output)."""
    workflow = Workflow.objects.create(name="Creative, then Brand and legal")
    Stage.objects.create(workflow=workflow, position=1, name="Creative", reviewers=creative)
    Stage.objects.create(workflow=workflow, position=2, name="Brand and legal", reviewers=legal)
    return workflow


@pytest.fixture
def cleo(creative) -> object:
    """A reviewer in the Creative group."""
    return make_user("cleo", REVIEWERS, "Creative")


@pytest.fixture
def lena(legal) -> object:
    """A reviewer in the Brand and legal group."""
    return make_user("lena", REVIEWERS, "Brand and legal")


def staged(requester, workflow: Workflow, *, position: int = 1, **fields) -> ImageRequest:
    """A request in review in the workflow's stage at `position`."""
    return request_in_review(
        requester,
        real_images=False,
        workflow=workflow,
        stage=workflow.stages.get(position=position),
        **fields,
    )


def outputs_of(image_request: ImageRequest) -> list:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def approve(output, reviewer) -> Decision:
    return actions.decide(output=output, reviewer=reviewer, verdict=V.APPROVE)


def test_first_stage_passed_moves_the_request_to_the_next_stage(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    ImageRequest.objects.filter(pk=image_request.pk).update(
        claimed_by=cleo, claimed_at=timezone.now()
    )
    first, _ = outputs_of(image_request)

    decision = approve(first, cleo)

    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW
    assert image_request.stage.name == "Brand and legal"
    assert image_request.claimed_by is None
    assert decision.stage.name == "Creative"
    event = Event.objects.get(request=image_request, subject="stage")
    assert event.note == "stage Creative -> Brand and legal"
    assert event.actor == cleo


def test_only_outputs_that_passed_are_decided_in_the_next_stage(requester, workflow, cleo, lena):
    image_request = staged(requester, workflow)
    first, second = outputs_of(image_request)
    approve(first, cleo)

    with pytest.raises(DecisionRefused, match="did not pass an earlier stage"):
        approve(second, lena)
    actions.review.decide_undecided(
        image_request_id=image_request.pk, reviewer=lena, verdict=V.APPROVE
    )

    assert list(Decision.objects.filter(reviewer=lena).values_list("output", flat=True)) == [
        first.pk
    ]
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_last_stage_approves_and_only_then_tells_and_publishes(
    requester, workflow, cleo, lena, settings, monkeypatch
):
    published = []
    monkeypatch.setattr(
        "imagereview.actions.publishing.publish",
        lambda *, output, **kwargs: published.append(output.pk),
    )
    image_request = staged(requester, workflow, auto_publish=True)
    first, _ = outputs_of(image_request)

    approve(first, cleo)
    assert not WebhookEvent.objects.filter(type="output.approved").exists()
    assert published == []

    approve(first, lena)
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED
    assert image_request.stage.name == "Brand and legal"
    assert WebhookEvent.objects.filter(type="output.approved").count() == 1
    assert published == [first.pk]


def test_a_reject_in_the_second_stage_rejects_the_request(requester, workflow, cleo, lena):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    actions.decide(output=first, reviewer=lena, verdict=V.REJECT, reason="off_brand")

    image_request.refresh_from_db()
    assert image_request.status == R.REJECTED
    assert WebhookEvent.objects.filter(type="output.rejected").count() == 1


def test_changes_in_the_second_stage_start_a_revision_where_the_workflow_says(
    requester, workflow, cleo, lena
):
    workflow.revision_starts_at = 2
    workflow.save()
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    revision = actions.request_changes(
        output=first, reviewer=lena, prompt="a lighthouse at dawn", **PARAMS
    )

    assert revision.workflow == workflow
    assert revision.stage.name == "Brand and legal"
    assert Decision.objects.get(verdict=V.CHANGES).stage.name == "Brand and legal"
    image_request.refresh_from_db()
    assert image_request.status == R.CHANGES_REQUESTED


def test_a_revision_starts_at_the_first_stage_by_default(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    revision = actions.request_changes(
        output=first, reviewer=cleo, prompt="a lighthouse at dawn", **PARAMS
    )

    assert revision.stage.name == "Creative"


def test_revision_start_past_the_last_stage_is_clamped(requester, workflow, cleo):
    workflow.revision_starts_at = 9
    workflow.save()
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    revision = actions.request_changes(output=first, reviewer=cleo, prompt="again", **PARAMS)

    assert revision.stage.name == "Brand and legal"


def test_a_revision_starting_in_the_second_stage_offers_every_output_there(
    requester, workflow, lena
):
    image_request = staged(requester, workflow, position=2)
    _, second = outputs_of(image_request)

    approve(second, lena)

    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_stage_needs_come_from_the_stage(requester, workflow, cleo, creative):
    stage = workflow.stages.get(position=1)
    stage.required_approvals = 2
    stage.save()
    second_creative = make_user("cory", REVIEWERS, "Creative")
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    approve(first, cleo)
    image_request.refresh_from_db()
    assert image_request.stage.name == "Creative"

    approve(first, second_creative)
    image_request.refresh_from_db()
    assert image_request.stage.name == "Brand and legal"


def test_undo_across_the_stage_boundary_puts_the_request_back(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    decision = approve(first, cleo)

    actions.undo_decision(decision_id=decision.pk, reviewer=cleo)

    image_request.refresh_from_db()
    assert image_request.stage.name == "Creative"
    assert image_request.status == R.IN_REVIEW
    notes = list(
        Event.objects.filter(request=image_request, subject="stage")
        .order_by("id")
        .values_list("note", flat=True)
    )
    assert notes == [
        "stage Creative -> Brand and legal",
        "stage Brand and legal -> Creative (undo)",
    ]


def test_undo_across_the_boundary_is_refused_once_the_next_stage_decided(
    requester, workflow, cleo, lena
):
    workflow.stages.filter(position=2).update(required_approvals=2)
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    decision = approve(first, cleo)
    approve(first, lena)

    with pytest.raises(DecisionRefused, match="Brand and legal have already decided on it"):
        actions.undo_decision(decision_id=decision.pk, reviewer=cleo)

    decision.refresh_from_db()
    assert decision.undone_at is None
    image_request.refresh_from_db()
    assert image_request.stage.name == "Brand and legal"


def test_undo_of_the_final_approval_returns_to_the_last_stage(requester, workflow, cleo, lena):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)
    final = approve(first, lena)

    actions.undo_decision(decision_id=final.pk, reviewer=lena)

    image_request.refresh_from_db()
    assert image_request.status == R.IN_REVIEW
    assert image_request.stage.name == "Brand and legal"


def test_undo_window_still_applies_across_stages(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    decision = approve(first, cleo)
    Decision.objects.filter(pk=decision.pk).update(created_at=timezone.now() - timedelta(minutes=5))

    with pytest.raises(DecisionRefused, match="Too late"):
        actions.undo_decision(decision_id=decision.pk, reviewer=cleo)


def test_a_reviewer_outside_the_stage_group_cannot_decide(requester, workflow, lena):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    with pytest.raises(DecisionRefused, match="only its reviewers \\(Creative\\)"):
        approve(first, lena)

    assert not Decision.objects.exists()


def test_a_superuser_decides_in_any_stage(requester, workflow):
    boss = make_user("boss", superuser=True)
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    approve(first, boss)
    approve(first, boss)

    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_separation_of_duties_still_applies_in_a_stage(workflow, cleo):
    image_request = staged(cleo, workflow)
    first, _ = outputs_of(image_request)

    with pytest.raises(DecisionRefused, match="someone else"):
        approve(first, cleo)


def test_a_request_without_a_workflow_is_reviewed_as_before(requester, reviewer, workflow):
    image_request = request_in_review(requester, real_images=False)
    first, _ = outputs_of(image_request)

    decision = approve(first, reviewer)

    assert decision.stage is None
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED
    assert WebhookEvent.objects.filter(type="output.approved").count() == 1


# The queue and the review page.


def test_queue_shows_each_reviewer_only_their_stages(requester, workflow, cleo, lena, reviewer):
    in_creative = staged(requester, workflow, prompt="creative one")
    in_legal = staged(requester, workflow, position=2, prompt="legal one")
    plain = request_in_review(requester, real_images=False, prompt="no stages")

    def queue_of(user) -> set[int]:
        response = client_for(user).get(reverse("review_queue"))
        assert response.status_code == 200
        return {r.pk for r in response.context["image_requests"]}

    assert queue_of(cleo) == {in_creative.pk, plain.pk}
    assert queue_of(lena) == {in_legal.pk, plain.pk}
    assert queue_of(reviewer) == {plain.pk}
    assert queue_of(make_user("boss", superuser=True)) == {in_creative.pk, in_legal.pk, plain.pk}


def test_queue_rows_show_the_stage(requester, workflow, cleo):
    staged(requester, workflow)

    response = client_for(cleo).get(reverse("review_queue"))

    assert 'class="stage-name">Creative</span>' in response.content.decode()


def test_queue_filters_by_stage(requester, workflow):
    boss = make_user("boss", superuser=True)
    in_creative = staged(requester, workflow)
    in_legal = staged(requester, workflow, position=2)
    plain = request_in_review(requester, real_images=False)
    legal_stage = workflow.stages.get(position=2)

    response = client_for(boss).get(reverse("review_queue"), {"stage": legal_stage.pk})
    assert [r.pk for r in response.context["image_requests"]] == [in_legal.pk]
    response = client_for(boss).get(reverse("review_queue"), {"stage": "none"})
    assert [r.pk for r in response.context["image_requests"]] == [plain.pk]
    response = client_for(boss).get(
        reverse("review_queue"), {"stage": legal_stage.pk}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert f'data-request="{in_legal.pk}"' in response.content.decode()
    assert f'data-request="{in_creative.pk}"' not in response.content.decode()
    assert f"stage={legal_stage.pk}" in response.context["filter_query"]


def test_next_item_skips_requests_in_other_stages(requester, workflow, cleo):
    first = staged(requester, workflow)
    staged(requester, workflow, position=2)
    third = staged(requester, workflow)

    response = client_for(cleo).get(reverse("review_detail", args=[first.pk]))

    assert response.context["next_request"].pk == third.pk


def test_review_page_shows_every_stage_and_its_decisions(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    response = client_for(cleo).get(reverse("review_detail", args=[image_request.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    panel = page[page.index('id="stages"') :]
    assert "Creative, then Brand and legal" in panel
    assert panel.index("Creative") < panel.index("Brand and legal")
    assert "1 approval per output, 1 output" in panel
    assert 'data-stage-state="done"' in panel and 'data-stage-state="current"' in panel
    assert "cleo" in panel
    assert "0 of 1 approved so far; 1 output up for decision" in panel
    # Cleo is not in Brand and legal: no decision buttons for her now.
    assert 'name="verdict"' not in page
    assert "Brand and legal decide this stage" in page


def test_review_page_fragment_carries_the_stages(requester, workflow, lena):
    image_request = staged(requester, workflow, position=2)

    response = client_for(lena).get(
        reverse("review_detail", args=[image_request.pk]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert 'id="stages"' in response.content.decode()
    assert 'name="verdict"' in response.content.decode()


def test_review_page_of_a_request_without_stages_has_no_panel(requester, reviewer):
    image_request = request_in_review(requester, real_images=False)

    response = client_for(reviewer).get(reverse("review_detail", args=[image_request.pk]))

    assert 'id="stages"' not in response.content.decode()


def test_deciding_outside_ones_stage_is_refused_on_the_page(requester, workflow, lena):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    response = client_for(lena).post(
        reverse("decide", args=[first.pk]), {"verdict": "approve"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 422
    assert "only its reviewers (Creative)" in response.content.decode()
    assert not Decision.objects.exists()


def test_approving_the_stage_opens_the_next_item(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)

    response = client_for(cleo).post(
        reverse("decide", args=[first.pk]), {"verdict": "approve"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == reverse("review_queue")


def test_undo_refusal_is_shown_to_the_reviewer(requester, workflow, cleo, lena):
    workflow.stages.filter(position=2).update(required_approvals=2)
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    decision = approve(first, cleo)
    approve(first, lena)

    response = client_for(cleo).post(
        reverse("undo_decision", args=[decision.pk]),
        {"page": str(image_request.pk)},
        headers={"HX-Request": "true"},
    )

    assert "Brand and legal have already decided on it; ask them." in response.content.decode()


# Choosing the workflow: form, CSV, API, default.


def test_form_offers_workflows_only_when_there_are_some(db, requester):
    client = client_for(requester)
    assert 'name="workflow"' not in client.get(reverse("new_request")).content.decode()
    Workflow.objects.create(name="Legal only")
    assert 'name="workflow"' in client.get(reverse("new_request")).content.decode()


def test_form_request_gets_the_chosen_workflow_at_its_first_stage(requester, workflow):
    response = client_for(requester).post(
        reverse("new_request"), {"prompt": "a kite", **PARAMS, "workflow": workflow.name}
    )

    assert response.status_code == 302
    image_request = ImageRequest.objects.get(prompt="a kite")
    assert image_request.workflow == workflow
    assert image_request.stage.name == "Creative"


def test_form_refuses_an_unknown_workflow(requester, workflow):
    response = client_for(requester).post(
        reverse("new_request"), {"prompt": "a kite", **PARAMS, "workflow": "Nope"}
    )

    assert response.status_code == 400
    assert "There is no workflow named Nope" in response.content.decode()


def test_a_request_gets_the_default_workflow(requester, workflow):
    workflow.is_default = True
    workflow.save()

    image_request = actions.create_request(requester=requester, prompt="a kite", **PARAMS)

    assert image_request.workflow == workflow
    assert image_request.stage.name == "Creative"


def test_without_a_default_a_request_has_no_stages(requester, workflow):
    image_request = actions.create_request(requester=requester, prompt="a kite", **PARAMS)

    assert image_request.workflow is None and image_request.stage is None


def test_csv_workflow_column_names_the_workflow(requester, workflow):
    check = parse_batch(io.BytesIO(b"prompt,workflow\na kite,Creative, then Brand and legal\n"))
    assert check.has_errors  # the comma needs quoting, as in any CSV

    text = 'prompt,workflow\na kite,"Creative, then Brand and legal"\na boat,\n'
    check = parse_batch(io.BytesIO(text.encode()))
    assert not check.has_errors, check.invalid_rows
    kite, boat = import_rows(requester=requester, rows=check.valid_rows)

    assert kite.workflow == workflow and kite.stage.name == "Creative"
    assert boat.workflow is None


def test_csv_unknown_workflow_is_a_row_error(requester, workflow):
    check = parse_batch(io.BytesIO(b"prompt,workflow\na kite,Nope\n"))

    assert check.invalid_rows[0].errors == ("There is no workflow named Nope.",)


def test_api_request_names_its_workflow(requester, workflow):
    client = token_client(requester)
    response = client.post(
        "/api/v1/requests",
        {"prompt": "a kite", "workflow": workflow.name},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["workflow"] == workflow.name
    assert body["stage"] == "Creative"


def test_api_refuses_an_unknown_workflow(requester, workflow):
    response = token_client(requester).post(
        "/api/v1/requests",
        {"prompt": "a kite", "workflow": "Nope"},
        content_type="application/json",
    )

    assert response.status_code == 422
    assert "There is no workflow named Nope" in response.content.decode()


def test_admin_edits_a_workflow_with_its_stages(workflow):
    admin = make_user("root", REQUESTERS, superuser=True)
    response = client_for(admin).get(
        reverse("admin:imagereview_workflow_change", args=[workflow.pk])
    )

    assert response.status_code == 200
    assert "Brand and legal" in response.content.decode()


def test_seed_demo_adds_the_two_stage_workflow(db):
    call_command("seed_demo")

    workflow = Workflow.objects.get(name="Creative, then Brand and legal")
    assert not workflow.is_default
    assert [s.name for s in workflow.stages.order_by("position")] == ["Creative", "Brand and legal"]
    assert Group.objects.get(name="Creative").user_set.filter(username="reviewer").exists()


def test_an_output_is_published_only_once_it_passed_the_last_stage(requester, workflow, cleo, lena):
    from imagereview.actions import publishing

    workflow.stages.filter(position=1).update(required_approvals=2)
    image_request = staged(requester, workflow, auto_publish=False)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    with pytest.raises(publishing.PublishRefused, match="has not passed every review stage"):
        publishing.publish(output=first, actor=lena)

    approve(first, make_user("cory", REVIEWERS, "Creative"))
    with pytest.raises(publishing.PublishRefused, match="is not approved"):
        publishing.publish(output=first, actor=lena)
    approve(first, lena)
    assert publishing.publish(output=first, actor=lena).output == first


def test_library_export_counts_outputs_approved_in_the_last_stage_only(
    requester, workflow, cleo, lena
):
    from imagereview.queries.library import approved

    image_request = staged(requester, workflow)
    first, second = outputs_of(image_request)
    outputs = image_request.assets.filter(kind="output")
    approve(first, cleo)
    assert list(approved(outputs)) == []

    approve(first, lena)
    assert list(approved(outputs)) == [first]
    plain = request_in_review(requester, real_images=False)
    plain_first, _ = outputs_of(plain)
    approve(plain_first, cleo)
    assert list(approved(plain.assets.filter(kind="output"))) == [plain_first]


def test_requester_page_names_the_stage(requester, workflow, cleo):
    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    response = client_for(requester).get(image_request.get_absolute_url())

    assert "Stage 2, Brand and legal: needs 1 approved output, 0 so far" in (
        response.content.decode()
    )


def test_a_reviewer_in_both_groups_gets_the_request_again_in_the_next_stage(
    requester, workflow, legal
):
    both = make_user("bo", REVIEWERS, "Creative", "Brand and legal")
    image_request = staged(requester, workflow, variants=1)
    other = staged(requester, workflow)
    [first] = outputs_of(image_request)
    approve(first, both)

    response = client_for(both).get(reverse("review_detail", args=[other.pk]))

    assert response.context["next_request"].pk == image_request.pk
    approve(first, both)
    image_request.refresh_from_db()
    assert image_request.status == R.APPROVED


def test_admin_refuses_a_second_default_workflow(workflow):
    workflow.is_default = True
    workflow.save()
    admin = make_user("root", superuser=True)

    response = client_for(admin).post(
        reverse("admin:imagereview_workflow_add"),
        {
            "name": "Legal only",
            "is_default": "on",
            "revision_starts_at": "1",
            "stages-TOTAL_FORMS": "0",
            "stages-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "is the default workflow: untick it there first" in response.content.decode()
    assert not Workflow.objects.filter(name="Legal only").exists()


def test_review_page_holds_back_outputs_an_earlier_stage_did_not_pass(
    requester, workflow, cleo, lena
):
    image_request = staged(requester, workflow)
    first, second = outputs_of(image_request)
    approve(first, cleo)

    response = client_for(lena).get(reverse("review_detail", args=[image_request.pk]))

    page = response.content.decode()
    assert page.count('name="verdict" value="approve"') == 1
    assert f'action="{reverse("decide", args=[first.pk])}' in page
    assert "Not up for decision in Brand and legal" in page


def test_library_shows_an_output_approved_only_once_the_last_stage_approves_it(
    requester, workflow, cleo, lena
):
    from imagereview.queries.library import library_page

    image_request = staged(requester, workflow)
    first, _ = outputs_of(image_request)
    approve(first, cleo)

    def verdicts() -> list[str]:
        page = library_page(viewer=lena, filters={})
        [row] = [row for row in page.rows if row.image_request.pk == image_request.pk]
        return [output.verdict for output in row.outputs]

    assert verdicts() == ["awaiting", "awaiting"]
    approve(first, lena)
    assert verdicts() == ["approved", "closed"]


def test_queue_counts_what_awaits_in_each_of_the_reviewers_stages(
    requester, workflow, cleo, reviewer
):
    staged(requester, workflow)
    staged(requester, workflow)
    staged(requester, workflow, position=2)

    response = client_for(cleo).get(reverse("review_queue"))

    assert [(c.stage.name, c.shown) for c in response.context["stage_counts"]] == [
        ("Creative", "2")
    ]
    assert 'id="stage-counts"' in response.content.decode()
    assert client_for(reviewer).get(reverse("review_queue")).context["stage_counts"] == []


def test_csv_preview_shows_the_workflow_each_row_will_use(requester_client, workflow):
    text = 'prompt,workflow\na kite,"Creative, then Brand and legal"\na boat,\n'
    upload = SimpleUploadedFile("batch.csv", text.encode(), content_type="text/csv")
    response = requester_client.post(reverse("import_batch"), {"file": upload})

    assert response.status_code == 200
    assert "<th>Review stages</th>" in response.content.decode()
    assert "<td>Creative, then Brand and legal</td>" in response.content.decode()
    assert "<td>The default</td>" in response.content.decode()


# The reviewers' digest: what awaits each reviewer in their own stages.


def digests_of(user) -> list[Notification]:
    return list(Notification.objects.filter(recipient=user, kind=notifications.REVIEW_DIGEST))


def test_digest_counts_only_the_stages_a_reviewer_decides(requester, workflow, cleo, lena):
    for user in (cleo, lena):
        NotificationPreference.objects.create(user=user, review_digest="immediate")
    staged(requester, workflow)

    notifications.send_review_digests()

    assert "1 request awaits review" in digests_of(cleo)[0].subject
    assert digests_of(lena) == []


def test_a_request_reaching_a_stage_wakes_its_reviewers_immediate_digest(
    requester, workflow, cleo, lena
):
    for user in (cleo, lena):
        NotificationPreference.objects.create(user=user, review_digest="immediate")
    image_request = staged(requester, workflow)
    notifications.send_review_digests()
    assert digests_of(lena) == []

    approve(outputs_of(image_request)[0], cleo)
    notifications.send_review_digests(timezone.now() + timedelta(seconds=1))

    assert len(digests_of(lena)) == 1 and len(digests_of(cleo)) == 1
