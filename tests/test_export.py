"""Export: approved outputs as one streamed ZIP of images, manifests and an index CSV."""

import csv
import io
import json
import zipfile

import jsonschema
import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from imagereview import actions
from imagereview.models import Asset, ImageRequest, Publication
from imagereview.publishing import export, manifest
from imagereview.queries.library import export_outputs
from imagereview.roles import REQUESTERS
from tests.conftest import client_for, make_user
from tests.factories import request_in_review

P = Publication.State
EXPORT = "/library/export/"


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind="output").order_by("generation__variant"))


def approved_request(requester, reviewer, prompt: str = "a lighthouse at dusk", **fields):
    """A request whose first output is approved and second rejected."""
    fields.setdefault("approval_quota", 1)
    item = request_in_review(requester, prompt=prompt, real_images=False, **fields)
    first, second, *_ = outputs_of(item)
    actions.decide(output=second, reviewer=reviewer, verdict="reject", reason="artefacts")
    actions.decide(output=first, reviewer=reviewer, verdict="approve")
    return item


def unzip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def index_rows(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read("index.csv").decode())))


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def stored_bytes(output: Asset) -> bytes:
    with output.file.open("rb") as stored:
        return stored.read()


def test_export_of_selected_requests_holds_images_manifests_and_index(
    requester, reviewer, reviewer_client
):
    item = approved_request(requester, reviewer, variants=2)
    other = approved_request(requester, reviewer, prompt="three lemons", variants=2)
    response = reviewer_client.post(EXPORT, {"requests": [item.pk, other.pk]})
    today = timezone.localdate().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="imagereview-export-{today}.zip"'
    )
    archive = unzip(response)
    assert archive.testzip() is None
    approved = [outputs_of(item)[0], outputs_of(other)[0]]
    rows = index_rows(archive)
    assert [int(row["output_id"]) for row in rows] == [o.pk for o in approved]
    for output, row in zip(approved, rows, strict=True):
        stem = f"{output.request_id}-v1-1-{output.sha256[:12]}"
        assert row["file"] == f"images/{stem}.png"
        assert row["manifest"] == f"manifests/{stem}.json"
        assert archive.read(row["file"]) == stored_bytes(output)
        assert archive.getinfo(row["file"]).compress_type == zipfile.ZIP_STORED
        assert archive.getinfo(row["manifest"]).compress_type == zipfile.ZIP_DEFLATED
        document = json.loads(archive.read(row["manifest"]))
        jsonschema.validate(document, manifest.schema())
        assert document["output"]["sha256"] == output.sha256 == row["sha256"]
        assert document["approval"]["approved"] is True
        assert row["verdict"] == "Approved"
        assert row["approvals"] == "1"
        assert row["request_id"] == str(output.request_id)
        assert (row["mode"], row["aspect_ratio"], row["output_format"]) == (
            "generate",
            "1:1",
            "png",
        )
        assert (row["width"], row["height"]) == (str(output.width), str(output.height))
        assert row["bytes"] == str(output.bytes)
        assert row["problem"] == ""
    assert rows[1]["prompt"] == "three lemons"
    assert sorted(archive.namelist()) == sorted(
        ["index.csv", *(r["file"] for r in rows), *(r["manifest"] for r in rows)]
    )


def test_export_of_all_matching_follows_the_library_filters(requester, reviewer, reviewer_client):
    lemons = approved_request(requester, reviewer, prompt="three lemons on a table")
    approved_request(requester, reviewer, prompt="a fox in fresh snow")
    archive = unzip(reviewer_client.get(EXPORT, {"q": "lemons"}))
    assert [int(row["request_id"]) for row in index_rows(archive)] == [lemons.pk]
    # The library's bulk form posts its filters with scope=matching.
    archive = unzip(reviewer_client.post(EXPORT, {"scope": "matching", "q": "fox"}))
    assert [row["prompt"] for row in index_rows(archive)] == ["a fox in fresh snow"]


def test_export_of_published_outputs_only(requester, reviewer, reviewer_client):
    item = approved_request(requester, reviewer, variants=3, approval_quota=2)
    first, _, third = outputs_of(item)
    actions.decide(output=third, reviewer=reviewer, verdict="approve")
    Publication.objects.create(
        output=third,
        request=item,
        target="local",
        key="2025/01/x.png",
        manifest_key="2025/01/x.manifest.json",
        state=P.PUBLISHED,
    )
    everything = unzip(reviewer_client.post(EXPORT, {"requests": [item.pk]}))
    assert [int(r["output_id"]) for r in index_rows(everything)] == [first.pk, third.pk]
    published = unzip(reviewer_client.post(EXPORT, {"requests": [item.pk], "include": "published"}))
    (row,) = index_rows(published)
    assert int(row["output_id"]) == third.pk
    assert (row["published_target"], row["published_key"]) == ("local", "2025/01/x.png")


def test_export_neutralises_formulas_in_the_index(requester, reviewer, reviewer_client):
    prompts = ['=HYPERLINK("http://example.com/x","click")', "+1+1", "-2", "@SUM(A1)", "\tx"]
    for prompt in prompts:
        approved_request(requester, reviewer, prompt=prompt)
    archive = unzip(reviewer_client.get(EXPORT))
    assert [row["prompt"] for row in index_rows(archive)] == [f"'{p}" for p in prompts]


def test_neutralise_leaves_plain_text_and_numbers_alone():
    assert export.neutralise("a lighthouse = tall") == "a lighthouse = tall"
    assert export.neutralise("\rcmd") == "'\rcmd"
    assert export.neutralise(-1) == -1


def test_export_with_nothing_selected_says_so_and_sends_no_zip(
    requester, reviewer, reviewer_client
):
    waiting = request_in_review(requester, real_images=False)
    for ask in (
        lambda: reviewer_client.post(EXPORT, {"state": "in_review"}, follow=True),
        lambda: reviewer_client.post(
            EXPORT, {"state": "in_review", "scope": "matching"}, follow=True
        ),
        lambda: reviewer_client.post(
            EXPORT, {"requests": [waiting.pk], "state": "in_review"}, follow=True
        ),
        lambda: reviewer_client.get(EXPORT, {"state": "in_review"}, follow=True),
    ):
        response = ask()
        assert response.redirect_chain == [("/library/?state=in_review", 302)]
        assert response["Content-Type"].startswith("text/html")
        assert [str(m) for m in response.context["messages"]] == [
            "Nothing to export: select requests with approved outputs, or change the filters."
        ]
        assert (
            "Nothing to export: select requests with approved outputs" in response.content.decode()
        )


def test_a_requester_exports_only_their_own_requests(requester, reviewer):
    own = approved_request(requester, reviewer, prompt="alice's lighthouse")
    bob = make_user("bob", REQUESTERS)
    bobs = approved_request(bob, reviewer, prompt="bob's lighthouse")
    bob_client = client_for(bob)
    response = bob_client.post(EXPORT, {"requests": [own.pk]})
    assert response.status_code == 302
    assert "Nothing to export" in said(response)[0]
    archive = unzip(bob_client.get(EXPORT))
    assert [int(row["request_id"]) for row in index_rows(archive)] == [bobs.pk]
    archive = unzip(bob_client.post(EXPORT, {"requests": [own.pk, bobs.pk]}))
    assert [int(row["request_id"]) for row in index_rows(archive)] == [bobs.pk]
    assert export_outputs(viewer=bob, request_ids=[own.pk]).count() == 0


def test_export_needs_a_login(client, db):
    response = client.get(EXPORT)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_export_reads_files_a_chunk_at_a_time(requester, reviewer, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 16)
    approved_request(requester, reviewer)
    (output,) = export_outputs(viewer=reviewer)
    pieces = list(export.stream_export(export_outputs(viewer=reviewer)))
    # Stored images pass through as they are read, a chunk at a time.
    assert sum(1 for piece in pieces if len(piece) == 16) >= output.bytes // 16
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.read(index_rows(archive)[0]["file"]) == stored_bytes(output)


def test_export_fetches_outputs_in_batches_not_one_by_one(requester, reviewer, monkeypatch):
    monkeypatch.setattr(export, "BATCH", 50)

    def queries_for_export() -> int:
        with CaptureQueriesContext(connection) as queries:
            for _ in export.stream_export(export_outputs(viewer=reviewer)):
                pass
        return len(queries)

    approved_request(requester, reviewer)
    one = queries_for_export()
    for number in range(6):
        approved_request(requester, reviewer, prompt=f"take {number}")
    assert 0 < queries_for_export() == one


def test_an_output_whose_file_is_gone_is_named_in_the_index(requester, reviewer):
    kept = approved_request(requester, reviewer)
    lost = approved_request(requester, reviewer, prompt="lost")
    gone = outputs_of(lost)[0]
    gone.file.storage.delete(gone.file.name)
    archive = zipfile.ZipFile(
        io.BytesIO(b"".join(export.stream_export(export_outputs(viewer=reviewer))))
    )
    rows = {int(row["request_id"]): row for row in index_rows(archive)}
    assert rows[lost.pk]["file"] == ""
    assert "could not be read" in rows[lost.pk]["problem"]
    assert rows[lost.pk]["manifest"] in archive.namelist()
    assert archive.read(rows[kept.pk]["file"]) == stored_bytes(outputs_of(kept)[0])


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_library_offers_both_exports(requester, reviewer, reviewer_client, method):
    approved_request(requester, reviewer)
    body = reviewer_client.get(reverse("library"), {"q": "light"}).content.decode()
    assert f'action="{EXPORT}"' in body
    assert 'name="scope" value="selected">Export selected<' in body
    assert 'name="scope" value="matching">Export all matching<' in body
    assert '<input type="hidden" name="q" value="light">' in body
    client_method = getattr(reviewer_client, method)
    archive = unzip(client_method(EXPORT, {"q": "light", "scope": "matching"}))
    assert len(index_rows(archive)) == 1


def test_an_export_over_the_cap_is_refused_with_a_message(
    requester, reviewer, reviewer_client, settings
):
    settings.EXPORT_MAX_OUTPUTS = 1
    approved_request(requester, reviewer, prompt="a fox in fresh snow")
    approved_request(requester, reviewer, prompt="three lemons")
    response = reviewer_client.get(EXPORT, follow=True)
    assert response.redirect_chain
    assert "would hold 2 outputs, more than the 1 one export may hold" in response.content.decode()
