"""Publishing: approved outputs copied to a target with a manifest, verified, and retracted."""

import hashlib
import io
import json
from datetime import timedelta

import jsonschema
import pytest
from django.core.files.storage import storages
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from imagereview import actions, tasks
from imagereview.actions import publishing
from imagereview.actions.webhooks import send_due_deliveries
from imagereview.models import (
    Asset,
    Event,
    ImageRequest,
    Publication,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from imagereview.publishing import credentials, manifest, targets
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

P = Publication.State


def approve(image_request: ImageRequest, reviewer, index: int = 0) -> Asset:
    output = image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk")[index]
    actions.decide(output=output, reviewer=reviewer, verdict="approve")
    return output


@pytest.fixture
def run_jobs(enqueued):
    """Do what the test's transaction left for after commit, then run the publishing jobs
    that enqueued, as the cluster would, until nothing is left."""

    def run() -> None:
        pending = connection.run_on_commit
        while pending or enqueued:
            while pending:
                _, callback, _ = pending.pop(0)
                callback()
            while enqueued:
                job, *args = enqueued.pop(0)
                name = job.rsplit(".", 1)[-1]
                if name in ("publish_output", "withdraw_publication"):
                    getattr(tasks, name)(*args)

    return run


def landed(target: str, key: str) -> bytes:
    with storages[f"publish-{target}"].open(key, "rb") as stored:
        return stored.read()


@pytest.fixture
def approved_output(requester, reviewer) -> Asset:
    return approve(request_in_review(requester, variants=2), reviewer)


def test_publish_copies_file_and_manifest_to_local_target(
    approved_output, reviewer, run_jobs, publish_root
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    assert publication.state == P.PENDING
    image_request = approved_output.request
    assert publication.key == (
        f"{image_request.created_at:%Y/%m}/{image_request.pk}-v1-1-{approved_output.sha256[:12]}.png"
    )
    run_jobs()

    publication.refresh_from_db()
    assert publication.state == P.PUBLISHED
    body = landed("local", publication.key)
    assert hashlib.sha256(body).hexdigest() == publication.sha256
    assert publication.bytes == len(body)
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (approved_output.width, approved_output.height)
    document = json.loads(landed("local", publication.manifest_key))
    jsonschema.validate(document, manifest.schema())
    assert document["output"]["sha256"] == approved_output.sha256
    assert document["publication"]["key"] == publication.key
    assert document["timestamps"]["published_at"] == document["publication"]["published_at"]
    assert document == publication.manifest
    assert sorted(p.name for p in publish_root.rglob("*") if p.is_file()) == sorted(
        [publication.key.rsplit("/", 1)[1], publication.manifest_key.rsplit("/", 1)[1]]
    )
    assert list(
        Event.objects.filter(publication=publication)
        .order_by("id")
        .values_list("from_state", "to_state")
    ) == [("", "pending"), ("pending", "published")]


def test_published_file_carries_content_credentials(approved_output, reviewer, run_jobs):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    publication.refresh_from_db()
    assert publication.credentials == "signed", publication.credentials_note
    assert "NOT TRUSTED" in publication.credentials_note
    assert publication.manifest["publication"]["credentials"] == "signed"
    store = credentials.read_credentials(
        io.BytesIO(landed("local", publication.key)), approved_output.content_type
    )
    active = store["manifests"][store["active_manifest"]]
    labels = {assertion["label"]: assertion["data"] for assertion in active["assertions"]}
    approval = labels["org.imagereview.approval"]
    assert approval["output_sha256"] == approved_output.sha256
    assert approval["approval"]["approved"] is True
    (action,) = labels["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/trainedAlgorithmicMedia")


def test_publishing_goes_on_without_credentials_and_says_why(
    approved_output, reviewer, run_jobs, settings
):
    settings.C2PA_ENABLED = False
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    publication.refresh_from_db()
    assert publication.state == P.PUBLISHED
    assert (publication.credentials, publication.credentials_note) == (
        "skipped",
        "disabled by C2PA_ENABLED",
    )
    assert publication.sha256 == approved_output.sha256


def test_publish_twice_writes_once(
    approved_output, reviewer, enqueued, publish_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = publishing.publish(output=approved_output, actor=reviewer)
        again = publishing.publish(output=approved_output, actor=reviewer)
    assert again.pk == first.pk
    assert [job for job in enqueued if job[0].endswith("publish_output")] == [
        ("imagereview.tasks.publish_output", first.pk)
    ]
    # The job itself may run twice (a worker killed after the copy): the second does nothing.
    tasks.publish_output(first.pk)
    tasks.publish_output(first.pk)
    assert Publication.objects.count() == 1
    assert len([p for p in publish_root.rglob("*") if p.is_file()]) == 2
    assert Event.objects.filter(publication=first, to_state="published").count() == 1


def test_a_copy_interrupted_midway_is_replaced_by_the_next_run(
    approved_output, reviewer, run_jobs, publish_root
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    # What a worker killed mid-copy leaves: a partial file at the key.
    partial = publish_root / publication.key
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89PNG half a file")
    run_jobs()
    publication.refresh_from_db()
    assert publication.state == P.PUBLISHED
    assert hashlib.sha256(partial.read_bytes()).hexdigest() == publication.sha256
    assert len(list(partial.parent.iterdir())) == 2


def test_publish_refuses_an_output_that_is_not_approved(requester, reviewer, enqueued):
    image_request = request_in_review(requester, variants=2)
    output = image_request.assets.filter(kind=Asset.Kind.OUTPUT).first()
    with pytest.raises(publishing.PublishRefused, match="not approved \\(0 of 1 approval\\)"):
        publishing.publish(output=output, actor=reviewer)
    actions.decide(output=output, reviewer=reviewer, verdict="reject", reason="artefacts")
    with pytest.raises(publishing.PublishRefused, match="was rejected"):
        publishing.publish(output=output, actor=reviewer)
    assert not Publication.objects.exists()
    assert not enqueued or all(not job[0].endswith("publish_output") for job in enqueued)


def test_publish_refuses_a_stored_file_that_no_longer_matches(approved_output, reviewer):
    with approved_output.file.open("wb") as stored:
        stored.write(b"not what was stored")
    with pytest.raises(publishing.PublishRefused, match="no longer matches its sha256"):
        publishing.publish(output=approved_output, actor=reviewer)
    assert not Publication.objects.exists()


def test_a_file_damaged_after_publish_was_asked_fails_the_job(
    approved_output, reviewer, run_jobs, publish_root
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    with approved_output.file.open("wb") as stored:
        stored.write(b"damaged")
    run_jobs()
    publication.refresh_from_db()
    assert publication.state == P.FAILED
    assert "no longer matches its sha256" in publication.failure_message
    assert not [p for p in publish_root.rglob("*") if p.is_file()]


def test_publish_refuses_an_unknown_target(approved_output, reviewer):
    with pytest.raises(publishing.PublishRefused, match="no publish target 'ftp'"):
        publishing.publish(output=approved_output, actor=reviewer, target="ftp")


def test_retract_removes_the_file_and_says_so_in_the_manifest(
    approved_output, reviewer, run_jobs, publish_root
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    with pytest.raises(publishing.PublishRefused, match="Say why"):
        publishing.retract(publication_id=publication.pk, actor=reviewer, reason="  ")

    publishing.retract(publication_id=publication.pk, actor=reviewer, reason="Wrong logo")
    run_jobs()
    publication.refresh_from_db()
    assert publication.state == P.RETRACTED
    assert publication.withdrawn_at is not None
    assert not (publish_root / publication.key).exists()
    document = json.loads((publish_root / publication.manifest_key).read_text())
    jsonschema.validate(document, manifest.schema())
    assert document["publication"]["retracted"]["reason"] == "Wrong logo"
    retraction = Event.objects.get(publication=publication, to_state="retracted")
    assert (retraction.actor, retraction.note) == (reviewer, "Wrong logo")
    with pytest.raises(publishing.PublishRefused, match="retracted \\(Wrong logo\\)"):
        publishing.publish(output=approved_output, actor=reviewer)
    with pytest.raises(publishing.PublishRefused, match="Only a published output"):
        publishing.retract(publication_id=publication.pk, actor=reviewer, reason="again")


def test_publishing_tells_subscribers(approved_output, reviewer, run_jobs):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    publishing.retract(publication_id=publication.pk, actor=reviewer, reason="Expired licence")
    types = list(WebhookEvent.objects.order_by("id").values_list("type", flat=True))
    assert types == ["output.approved", "output.published", "publication.retracted"]
    published = WebhookEvent.objects.get(type="output.published").payload["data"]
    assert published["key"] == publication.key
    assert published["download_url"].endswith(f"/publications/{publication.pk}/file/")


@pytest.mark.parametrize(
    ("setting", "field", "published"),
    [(True, None, True), (False, None, False), (False, True, True), (True, False, False)],
)
def test_approval_publishes_when_the_setting_or_the_request_says_so(
    requester, reviewer, settings, run_jobs, setting, field, published
):
    settings.PUBLISH_ON_APPROVAL = setting
    image_request = request_in_review(requester, variants=1, auto_publish=field)
    output = approve(image_request, reviewer)
    run_jobs()
    assert Publication.objects.filter(output=output, state=P.PUBLISHED).exists() == published


def test_an_approval_that_was_published_cannot_be_undone(approved_output, reviewer, enqueued):
    publishing.publish(output=approved_output, actor=reviewer)
    decision = approved_output.decisions.get()
    with pytest.raises(actions.DecisionRefused, match="retract the publication instead"):
        actions.undo_decision(decision_id=decision.pk, reviewer=reviewer)


def test_manifest_names_reviewers_only_when_the_setting_allows(approved_output, settings):
    document = manifest.manifest_for(approved_output)
    jsonschema.validate(document, manifest.schema())
    assert document["decisions"][0]["reviewer"] == {"role": "reviewer", "name": None}
    assert document["request"]["requester"]["name"] is None
    settings.MANIFEST_REVIEWER_NAMES = True
    document = manifest.manifest_for(approved_output)
    assert document["decisions"][0]["reviewer"] == {"role": "reviewer", "name": "rita"}


def test_manifest_follows_the_line_of_work(requester, reviewer, enqueued):
    first = request_in_review(requester, variants=1, prompt="a red kite")
    output = first.assets.get(kind=Asset.Kind.OUTPUT)
    revision = actions.request_changes(
        output=output,
        reviewer=reviewer,
        prompt="a red kite over a beach",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        comment="add the sea",
    )
    third = request_in_review(requester, variants=1, parent=revision, revision=3)
    revision.generations.update(credits=24, provider_task_id="task_rev")
    final = approve(third, reviewer)
    document = manifest.manifest_for(final)
    jsonschema.validate(document, manifest.schema())
    assert [v["id"] for v in document["revision_chain"]] == [first.pk, revision.pk, third.pk]
    assert document["cost"] == {"request_credits": 18.0, "line_credits": 60.0, "estimated": False}
    assert document["approval"]["approved"] is True
    assert document["provider_tasks"][0]["task_id"] == f"task_{third.pk}_1"


def test_manifests_for_many_outputs_take_constant_queries(
    requester, reviewer, django_assert_max_num_queries
):
    outputs = [approve(request_in_review(requester, variants=1), reviewer) for _ in range(6)]
    with django_assert_max_num_queries(8):
        documents = manifest.manifests_for(outputs)
    assert sorted(documents) == sorted(o.pk for o in outputs)
    for document in documents.values():
        jsonschema.validate(document, manifest.schema())


def test_edit_manifest_lists_its_references(requester, reviewer):
    image_request = request_in_review(requester, variants=1, mode=ImageRequest.Mode.EDIT)
    output = approve(image_request, reviewer)
    document = manifest.manifest_for(output)
    jsonschema.validate(document, manifest.schema())
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    assert document["digital_source_type"] == "compositeWithTrainedAlgorithmicMedia"
    assert document["references"] == [
        {
            "index": 0,
            "sha256": reference.sha256,
            "bytes": reference.bytes,
            "width": reference.width,
            "height": reference.height,
            "content_type": reference.content_type,
        }
    ]


def test_publish_to_s3_verifies_and_retracts(
    approved_output, reviewer, run_jobs, s3_target, s3_server
):
    publication = publishing.publish(output=approved_output, actor=reviewer, target="s3")
    run_jobs()
    publication.refresh_from_db()
    assert publication.state == P.PUBLISHED, publication.failure_message
    bucket = s3_server.client()
    body = bucket.get_object(Bucket=s3_target, Key=publication.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == publication.sha256
    document = json.loads(
        bucket.get_object(Bucket=s3_target, Key=publication.manifest_key)["Body"].read()
    )
    jsonschema.validate(document, manifest.schema())
    assert document["publication"]["target"] == "s3"

    publishing.retract(publication_id=publication.pk, actor=reviewer, reason="Client withdrew")
    run_jobs()
    keys = [item["Key"] for item in bucket.list_objects_v2(Bucket=s3_target)["Contents"]]
    assert keys == [publication.manifest_key]
    document = json.loads(
        bucket.get_object(Bucket=s3_target, Key=publication.manifest_key)["Body"].read()
    )
    assert document["publication"]["retracted"]["reason"] == "Client withdrew"


def test_published_file_from_s3_is_a_signed_redirect(
    approved_output, reviewer, run_jobs, s3_target, s3_server
):
    publication = publishing.publish(output=approved_output, actor=reviewer, target="s3")
    run_jobs()
    response = client_for(reviewer).get(reverse("published_file", args=[publication.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(f"{s3_server.url}/{s3_target}/")
    assert "Signature=" in response["Location"] or "X-Amz-Signature=" in response["Location"]


def test_publish_button_on_the_review_page(approved_output, reviewer_client, run_jobs):
    page = reviewer_client.get(reverse("review_detail", args=[approved_output.request_id]))
    assert reverse("publish_output", args=[approved_output.pk]).encode() in page.content
    response = reviewer_client.post(
        reverse("publish_output", args=[approved_output.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"Publishing" in response.content
    assert b'hx-trigger="every 2s"' in response.content
    run_jobs()
    panel = reviewer_client.get(
        reverse("publication_panel", args=[approved_output.pk]), HTTP_HX_REQUEST="true"
    )
    assert panel.status_code == 286  # stop polling: it is published
    assert b"Download" in panel.content


def test_publish_view_without_htmx_redirects_back_with_a_message(
    requester, reviewer_client, reviewer
):
    image_request = request_in_review(requester, variants=1)
    output = image_request.assets.get(kind=Asset.Kind.OUTPUT)
    back = reverse("review_detail", args=[image_request.pk])
    response = reviewer_client.post(
        reverse("publish_output", args=[output.pk]), {"next": back}, follow=True
    )
    assert response.redirect_chain[-1][0] == back
    assert b"only approved outputs can be published" in response.content
    assert not Publication.objects.exists()


def test_requesters_cannot_publish_or_retract(approved_output, requester_client):
    response = requester_client.post(reverse("publish_output", args=[approved_output.pk]))
    assert response.status_code == 403
    assert not Publication.objects.exists()


def test_retract_view_needs_a_reason(approved_output, reviewer, reviewer_client, run_jobs):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    url = reverse("retract_publication", args=[publication.pk])
    response = reviewer_client.post(url, {"reason": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert b"Say why the publication is retracted." in response.content
    response = reviewer_client.post(url, {"reason": "Wrong colours"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"Wrong colours" in response.content
    assert Publication.objects.get().state == P.RETRACTED


def test_published_file_is_for_the_requester_and_reviewers_only(
    approved_output, reviewer, requester, run_jobs
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    publication.refresh_from_db()
    url = reverse("published_file", args=[publication.pk])
    response = client_for(requester).get(url)
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == publication.sha256
    stranger = client_for(make_user("mallory", "requesters"))
    assert stranger.get(url).status_code == 404


def test_publish_key_names_the_request_revision_and_variant(approved_output):
    key = targets.publish_key(approved_output)
    year_month, name = key.rsplit("/", 1)
    assert name.startswith(f"{approved_output.request_id}-v1-1-{approved_output.sha256[:12]}")
    assert targets.manifest_key(key) == f"{year_month}/{name.rsplit('.', 1)[0]}.manifest.json"


def test_admin_publishes_approved_outputs_and_lists_publications(
    approved_output, requester, reviewer, run_jobs
):
    admin = client_for(make_user("root", superuser=True))
    pending = request_in_review(requester, variants=1).assets.get(kind=Asset.Kind.OUTPUT)
    response = admin.post(
        reverse("admin:imagereview_asset_changelist"),
        {"action": "publish", "_selected_action": [approved_output.pk, pending.pk]},
        follow=True,
    )
    assert b"1 output(s) on their way to publication." in response.content
    assert b"only approved outputs can be published" in response.content
    run_jobs()
    listing = admin.get(reverse("admin:imagereview_publication_changelist"))
    assert listing.status_code == 200
    assert Publication.objects.get().key.encode() in listing.content


@pytest.mark.parametrize(("choice", "stored"), [("", None), ("yes", True), ("no", False)])
def test_the_request_form_records_whether_to_publish_on_approval(requester_client, choice, stored):
    response = requester_client.post(
        reverse("new_request"),
        {
            "prompt": "a lighthouse",
            "aspect_ratio": "1:1",
            "resolution": "1K",
            "output_format": "png",
            "variants": "1",
            "auto_publish": choice,
        },
    )
    assert response.status_code == 302
    assert ImageRequest.objects.get().auto_publish is stored


def test_a_revision_keeps_the_request_choice_of_publishing(requester, reviewer):
    image_request = request_in_review(requester, variants=1, auto_publish=True)
    revision = actions.request_changes(
        output=image_request.assets.get(kind=Asset.Kind.OUTPUT),
        reviewer=reviewer,
        prompt="brighter",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    assert revision.auto_publish is True


def test_the_publishing_job_announces_the_publication_itself(
    approved_output, reviewer, run_jobs, webhook_receiver, enqueued
):
    WebhookEndpoint.objects.create(
        url=webhook_receiver.url, secret=webhook_receiver.secret, event_types=["output.published"]
    )
    publication = publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    (received,) = webhook_receiver.accepted()
    assert received.type == "output.published"
    assert received.payload["data"]["key"] == publication.key
    # No delivery job waits in the queue behind other work: the job made the attempt.
    assert not [job for job in enqueued if job[0].endswith("deliver_webhook")]
    assert WebhookDelivery.objects.get().state == WebhookDelivery.State.DELIVERED


def test_a_failed_announcement_is_retried_by_the_dispatcher(
    approved_output, reviewer, run_jobs, webhook_receiver, settings
):
    settings.WEBHOOK_RETRY_SCHEDULE = [0]
    webhook_receiver.configure(fail_first=1)
    WebhookEndpoint.objects.create(url=webhook_receiver.url, secret=webhook_receiver.secret)
    publishing.publish(output=approved_output, actor=reviewer)
    run_jobs()
    delivery = WebhookDelivery.objects.get(event__type="output.published")
    assert (delivery.state, delivery.attempts) == (WebhookDelivery.State.PENDING, 1)
    assert send_due_deliveries(timezone.now() + timedelta(seconds=1), limit=10) == 1
    tasks.deliver_webhook(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.state == WebhookDelivery.State.DELIVERED
    assert {r.webhook_id for r in webhook_receiver.seen()} == {delivery.event.event_id}


def test_a_run_that_signed_while_another_landed_leaves_the_landed_file(
    approved_output, reviewer, publish_root, monkeypatch
):
    publication = publishing.publish(output=approved_output, actor=reviewer)
    sign = publishing._sign
    overtaken = []

    def sign_while_another_run_lands(output, signed, document):
        outcome = sign(output, signed, document)
        if not overtaken:  # the first run is overtaken by a second one, which lands first
            overtaken.append(True)
            publishing.run_publication(publication_id=publication.pk)
        return outcome

    monkeypatch.setattr(publishing, "_sign", sign_while_another_run_lands)
    publishing.run_publication(publication_id=publication.pk)
    publication.refresh_from_db()
    landed_file = publish_root / publication.key
    assert hashlib.sha256(landed_file.read_bytes()).hexdigest() == publication.sha256
    assert Event.objects.filter(publication=publication, to_state="published").count() == 1
