"""The editing path: references validated, stored, hosted at the provider and checked."""

import html
import io
import re
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from imagereview import actions
from imagereview.models import Asset, Decision, Generation, ImageRequest
from imagereview.providers.sandbox import render
from tests.conftest import wait_for
from tests.factories import request_in_review

G = Generation.State
UPLOADS = "/api/file-stream-upload"


def image_bytes(size=(640, 480), kind="PNG", colour=(200, 80, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, kind)
    return out.getvalue()


def upload(name: str, content: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


EDIT = {
    "prompt": "make it look like a winter night",
    "aspect_ratio": "auto",
    "resolution": "1K",
    "output_format": "png",
    "variants": "1",
}


def stored_files() -> list[str]:
    root = default_storage.location
    import os

    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_edit_form_creates_request_with_its_references(requester_client, requester):
    files = [
        upload("a.png", image_bytes()),
        upload("b.jpg", image_bytes(kind="JPEG"), "image/jpeg"),
    ]
    response = requester_client.post(reverse("new_edit"), EDIT | {"references": files})
    image_request = ImageRequest.objects.get()
    assert response.status_code == 302
    assert image_request.mode == ImageRequest.Mode.EDIT
    references = list(image_request.assets.filter(kind="reference").order_by("index"))
    assert [(r.index, r.content_type) for r in references] == [(0, "image/png"), (1, "image/jpeg")]
    assert all(r.file and r.thumbnail for r in references)


def test_edit_form_title_is_plain_text_and_loads_its_script_once(requester_client):
    body = requester_client.get(reverse("new_edit")).content.decode()
    assert re.search(r"<title>(.*?)</title>", body, re.S).group(1) == "New request · imagereview"
    assert body.count("js/references.js") == 1


def test_edit_form_sets_the_review_policy(requester_client):
    policy = {"variants": "2", "required_approvals": "2", "approval_quota": "2"}
    response = requester_client.post(
        reverse("new_edit"), EDIT | policy | {"references": [upload("a.png", image_bytes())]}
    )
    assert response.status_code == 302
    image_request = ImageRequest.objects.get()
    assert (image_request.required_approvals, image_request.approval_quota) == (2, 2)


def test_edit_form_refuses_a_quota_over_the_variants(requester_client):
    response = requester_client.post(
        reverse("new_edit"),
        EDIT | {"approval_quota": "2", "references": [upload("a.png", image_bytes())]},
    )
    assert response.status_code == 400
    assert "Need at most 1 approved output: only 1 variant is asked for." in (
        response.content.decode()
    )
    assert not ImageRequest.objects.exists()


def bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (8000, 8000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "Add at least one reference image"),
        ([("notes.png", b"just some text, not an image")], "notes.png: the file is not a readable"),
        ([("anim.png", b"GIF89a" + b"\0" * 64)], "anim.png: the file is not a readable"),
        ([("bomb.png", "bomb")], "bomb.png: the image is 8,000×8,000 pixels"),
        ([("big.png", "big")], "big.png: the file is"),
        ([(f"r{n}.png", "ok") for n in range(9)], "At most 8 reference images (you gave 9)"),
    ],
    ids=["none", "text-renamed", "gif-renamed", "too-many-pixels", "too-big", "too-many"],
)
def test_bad_references_get_a_message_per_file_and_store_nothing(
    requester_client, files, message, monkeypatch
):
    contents = {"bomb": bomb(), "ok": image_bytes((64, 64))}
    if any(content == "big" for _, content in files):
        from imagereview import media

        monkeypatch.setattr(media, "MAX_REFERENCE_BYTES", 1000)
        contents["big"] = image_bytes((400, 400)) + b"\0" * 2000
    uploads = [upload(name, contents.get(content, content)) for name, content in files]
    response = requester_client.post(reverse("new_edit"), EDIT | {"references": uploads})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImageRequest.objects.exists()
    assert not Asset.objects.exists()
    assert stored_files() == []


def test_one_bad_file_among_good_ones_is_named(requester_client):
    uploads = [upload("good.png", image_bytes()), upload("bad.png", b"<html>")]
    body = requester_client.post(reverse("new_edit"), EDIT | {"references": uploads}).content
    assert "bad.png: the file is not a readable" in body.decode()
    assert "good.png" not in body.decode()


def test_a_failed_save_leaves_no_files_behind(requester, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Generation.objects, "create", broken)
    with pytest.raises(RuntimeError):
        actions.create_request(
            requester=requester,
            mode="edit",
            references=[actions.ReferenceUpload("a.png", io.BytesIO(image_bytes()))],
            **(EDIT | {"variants": 1}),
        )
    assert not Asset.objects.exists()
    assert stored_files() == []


def edit_request(requester, reference: bytes, **overrides) -> ImageRequest:
    return actions.create_request(
        requester=requester,
        mode="edit",
        references=[actions.ReferenceUpload("ref.png", io.BytesIO(reference))],
        **(EDIT | {"variants": 1} | overrides),
    )


def run(generation: Generation, kie, sandbox) -> Generation:
    actions.submit_generation(generation_id=generation.pk, client=kie)
    wait_for(lambda: all(t["state"] in ("success", "fail") for t in sandbox.tasks), timeout=10)
    actions.refresh_generation(generation_id=generation.pk, client=kie)
    actions.store_outputs(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    return generation


def test_edit_goes_through_the_provider_and_passes_its_checks(requester, kie, sandbox, settings):
    settings.KIE_CALLBACKS = False
    reference = render.render("a harbour at noon", aspect_ratio="4:3")
    image_request = edit_request(requester, reference)
    generation = run(image_request.generations.get(), kie, sandbox)
    assert generation.state == G.STORED
    output = generation.outputs.get()
    assert (output.width, output.height) == (1200, 896)  # auto follows the 4:3 reference
    assert {c["name"]: c["passed"] for c in output.checks} == {
        "format": True,
        "aspect_ratio": True,
        "resolution": True,
        "reference": True,
        "resemblance": True,
    }
    assert not output.flagged
    assert sandbox.stats["calls"][UPLOADS] == 1


def test_reference_links_are_reused_until_they_expire(requester, kie, sandbox, settings):
    settings.KIE_CALLBACKS = False
    reference = render.render("a red door", aspect_ratio="1:1")
    first = edit_request(requester, reference).generations.get()
    run(first, kie, sandbox)
    second = edit_request(requester, reference).generations.get()
    run(second, kie, sandbox)
    assert sandbox.stats["calls"][UPLOADS] == 1  # the same bytes, the same live link

    Asset.objects.filter(kind="reference").update(
        provider_url_expires_at=timezone.now() + timedelta(minutes=30)
    )
    third = edit_request(requester, reference).generations.get()
    run(third, kie, sandbox)
    assert sandbox.stats["calls"][UPLOADS] == 2  # too close to expiry: uploaded again


def test_an_output_that_fails_its_checks_is_flagged_and_may_be_rejected_by_rule(
    requester, kie, sandbox, settings
):
    image_request = actions.create_request(
        requester=requester,
        prompt="a wide landscape",
        aspect_ratio="16:9",
        resolution="2K",
        output_format="png",
        variants=1,
        acceptance_rules={"auto_reject": ["format", "aspect_ratio", "resolution"]},
    )
    generation = image_request.generations.get()
    # The provider answers with a square 1K JPEG: wrong format, ratio and bucket.
    hosted = kie.upload_file(
        content=image_bytes((1024, 1024), "JPEG"),
        file_name="wrong.jpg",
        content_type="image/jpeg",
        upload_path="results",
    )
    Generation.objects.filter(pk=generation.pk).update(
        state=G.SUCCEEDED, provider_task_id="t-wrong", result_urls=[hosted.download_url]
    )
    actions.store_outputs(generation_id=generation.pk, client=kie)
    output = Asset.objects.get(kind="output")
    assert output.flagged
    assert [c["name"] for c in output.checks if not c["passed"]] == [
        "format",
        "aspect_ratio",
        "resolution",
    ]
    decision = Decision.objects.get()
    assert decision.reviewer is None and decision.verdict == "reject"
    assert decision.reason == "size" and "Rejected automatically" in decision.comment
    image_request.refresh_from_db()
    assert image_request.status == ImageRequest.Status.REJECTED


def store_result(generation: Generation, content: bytes, kie) -> Asset:
    """Store `content` as what the provider answered for `generation`."""
    hosted = kie.upload_file(
        content=content, file_name="result.png", content_type="image/png", upload_path="results"
    )
    Generation.objects.filter(pk=generation.pk).update(
        state=G.SUCCEEDED, provider_task_id=f"t-{generation.pk}", result_urls=[hosted.download_url]
    )
    actions.store_outputs(generation_id=generation.pk, client=kie)
    return generation.outputs.get()


def test_edits_and_generations_auto_reject_by_different_rules(requester_client):
    reference = upload("ref.png", image_bytes())
    requester_client.post(
        reverse("new_request"), EDIT | {"aspect_ratio": "1:1", "auto_reject": "on"}
    )
    requester_client.post(
        reverse("new_edit"), EDIT | {"references": [reference], "auto_reject": "on"}
    )
    rules = dict(ImageRequest.objects.values_list("mode", "acceptance_rules"))
    assert rules == {
        "generate": {"auto_reject": ["format", "aspect_ratio", "resolution"]},
        "edit": {"auto_reject": ["format", "aspect_ratio", "resolution", "reference"]},
    }


def edit_with_auto_reject(requester_client, reference: bytes) -> ImageRequest:
    requester_client.post(
        reverse("new_edit"),
        EDIT | {"references": [upload("ref.png", reference)], "auto_reject": "on"},
    )
    return ImageRequest.objects.latest("pk")


def test_an_edit_that_returns_its_reference_unchanged_is_rejected_by_rule(
    requester_client, kie, sandbox
):
    reference = render.render("a harbour at noon", aspect_ratio="4:3")
    image_request = edit_with_auto_reject(requester_client, reference)
    output = store_result(image_request.generations.get(), reference, kie)
    assert [c["name"] for c in output.checks if not c["passed"]] == ["reference"]
    decision = Decision.objects.get(output=output)
    assert decision.reviewer is None and decision.verdict == "reject"
    assert decision.reason == "prompt" and "the reference unchanged" in decision.comment
    image_request.refresh_from_db()
    assert image_request.status == ImageRequest.Status.REJECTED


def test_an_edit_unlike_its_reference_is_flagged_for_a_reviewer_not_rejected(
    requester_client, kie, sandbox
):
    reference = render.render("a harbour at noon", aspect_ratio="4:3")
    image_request = edit_with_auto_reject(requester_client, reference)
    unrelated = render.render("a bowl of ramen on a table", aspect_ratio="4:3")
    output = store_result(image_request.generations.get(), unrelated, kie)
    assert output.flagged
    assert [c["name"] for c in output.checks if not c["passed"]] == ["resemblance"]
    assert not Decision.objects.exists()
    image_request.refresh_from_db()
    assert image_request.status == ImageRequest.Status.IN_REVIEW


def test_edit_this_output_reuses_the_stored_file(requester, requester_client, kie, sandbox):
    image_request = actions.create_request(
        requester=requester,
        prompt="a lamp",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    generation = run(image_request.generations.get(), kie, sandbox)
    output = generation.outputs.get()

    form = requester_client.get(reverse("new_edit") + f"?from={output.pk}")
    assert form.status_code == 200 and "a lamp" in form.content.decode()
    assert "the first one is edited" not in form.content.decode()
    assert "they guide the edit." in form.content.decode()
    response = requester_client.post(
        reverse("new_edit"), EDIT | {"source": output.pk, "prompt": "the lamp, switched on"}
    )
    assert response.status_code == 302
    edit = ImageRequest.objects.get(mode="edit")
    reference = edit.assets.get(kind="reference")
    assert reference.file.name == output.file.name and reference.sha256 == output.sha256


def oversized_output(requester, content: bytes) -> Asset:
    """An output stored from the provider, within the output limits but not a reference's."""
    output = request_in_review(requester, variants=1, real_images=False).assets.get(kind="output")
    output.file.save("output.png", ContentFile(content))
    return output


def huge_but_small_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (8000, 5001)).save(out, "PNG")  # 40,008,000 pixels in a few kilobytes
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            image_bytes() + bytes(31 * 1024 * 1024),
            "the file is 31.0 MB, over the limit of 30 MB.",
        ),
        (
            huge_but_small_png(),
            "the image is 8,000×5,001 pixels, over the limit of 40,000,000 pixels.",
        ),
    ],
    ids=["too-big", "too-many-pixels"],
)
def test_edit_this_output_applies_the_reference_limits(
    requester, requester_client, content, message
):
    output = oversized_output(requester, content)
    response = requester_client.post(reverse("new_edit"), EDIT | {"source": output.pk})
    assert response.status_code == 400
    body = html.unescape(response.content.decode())
    assert f"Output {output.pk} of request #{output.request_id}: {message}" in body
    assert "make it smaller and upload that copy instead" in body
    assert not ImageRequest.objects.filter(mode="edit").exists()


def test_editing_someone_elses_output_is_refused(requester, kie, sandbox, db):
    from tests.conftest import client_for, make_user

    image_request = actions.create_request(
        requester=requester,
        prompt="mine",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    output = run(image_request.generations.get(), kie, sandbox).outputs.get()
    stranger = client_for(make_user("eve"))
    assert stranger.get(reverse("new_edit") + f"?from={output.pk}").status_code == 404
