"""Stored media in an S3-compatible bucket (moto in server mode): what the store path writes,
what checks, publishing and exports read back, deletion, and the signed links pages get."""

import hashlib
import io
import os
import re
import zipfile
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import connection
from django.urls import reverse

from imagereview import actions, tasks
from imagereview.actions import integrity, publishing
from imagereview.actions.requests import ReferenceUpload
from imagereview.models import Asset, Generation, ImageRequest, Publication
from imagereview.publishing.export import stream_export
from tests.conftest import client_for, make_user, wait_for
from tests.factories import request_in_review, small_picture
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY

G = Generation.State


@pytest.fixture
def media_bucket(s3_server, settings, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the S3 server as the default storage, as settings.py makes it from
    AWS_STORAGE_BUCKET_NAME and AWS_S3_ENDPOINT_URL."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"media-{name}-{os.getpid()}"
    s3_server.client().create_bucket(Bucket=bucket)
    settings.MEDIA_URL_EXPIRE = 300
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": s3_server.url,
                "region_name": REGION,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "signature_version": "s3v4",
                "file_overwrite": False,
                "default_acl": None,
                "querystring_auth": True,
                "querystring_expire": 300,
            },
        },
    }
    return bucket


@pytest.fixture
def bucket(s3_server, media_bucket):
    """Read the media bucket directly, as an operator would."""
    client = s3_server.client()

    class Bucket:
        name = media_bucket

        def get(self, key: str) -> dict:
            return client.get_object(Bucket=media_bucket, Key=key)

        def put(self, key: str, body: bytes) -> None:
            client.put_object(Bucket=media_bucket, Key=key, Body=body)

        def object_keys(self) -> list[str]:
            listing = client.list_objects_v2(Bucket=media_bucket)
            return sorted(item["Key"] for item in listing.get("Contents", []))

    return Bucket()


@pytest.fixture(autouse=True)
def no_callbacks(settings):
    # No web server takes callbacks here: the refresh is driven by hand, as the reconciler's.
    settings.KIE_CALLBACKS = False


def run_to_review(image_request: ImageRequest, kie) -> ImageRequest:
    """Submit, refresh and store every generation of `image_request` against the sandbox."""
    for generation in image_request.generations.all():
        actions.submit_generation(generation_id=generation.pk, client=kie)

        def finished(generation=generation) -> bool:
            actions.refresh_generation(generation_id=generation.pk, client=kie)
            generation.refresh_from_db()
            return generation.state != G.SUBMITTED

        wait_for(finished, timeout=10, interval=0.05, message="the task to finish")
        actions.store_outputs(generation_id=generation.pk, client=kie)
    image_request.refresh_from_db()
    return image_request


def outputs_of(image_request: ImageRequest) -> list[Asset]:
    return list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk"))


def test_a_stored_output_and_its_thumbnail_land_in_the_bucket(
    requester, kie, sandbox, bucket, media_root
):
    image_request = actions.create_request(
        requester=requester,
        prompt="a red fox in fresh snow",
        aspect_ratio="16:9",
        resolution="1K",
        output_format="png",
        variants=1,
    )
    assert run_to_review(image_request, kie).status == ImageRequest.Status.IN_REVIEW
    (output,) = outputs_of(image_request)

    stored = bucket.get(output.file.name)
    content = stored["Body"].read()
    assert content == httpx.get(output.source_url).content
    assert hashlib.sha256(content).hexdigest() == output.sha256
    assert stored["ContentType"] == "image/png"
    thumbnail = bucket.get(output.thumbnail.name)
    assert thumbnail["ContentType"] == "image/jpeg"
    assert thumbnail["Body"].read()[:3] == b"\xff\xd8\xff"
    assert bucket.object_keys() == sorted([output.file.name, output.thumbnail.name])
    assert not media_root.exists() or not any(media_root.rglob("*.*"))


def test_an_edit_reads_its_reference_back_from_the_bucket(requester, kie, sandbox, bucket):
    image_request = actions.create_request(
        requester=requester,
        mode=ImageRequest.Mode.EDIT,
        prompt="make the sky orange",
        aspect_ratio="1:1",
        resolution="1K",
        output_format="png",
        variants=1,
        references=[ReferenceUpload(name="sky.png", stream=io.BytesIO(small_picture()))],
    )
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    assert bucket.get(reference.file.name)["Body"].read() == small_picture()

    # Submission uploads the reference to the provider, the checks compare the output with it:
    # both read it from the bucket.
    assert run_to_review(image_request, kie).status == ImageRequest.Status.IN_REVIEW
    (output,) = outputs_of(image_request)
    assert {check["name"] for check in output.checks} >= {"format", "aspect_ratio"}
    assert integrity.verify_asset(output) == ""
    assert integrity.verify_asset(reference) == ""


def test_publishing_reads_the_stored_output_from_the_bucket(
    requester, reviewer, bucket, enqueued, publish_root
):
    image_request = request_in_review(requester, variants=1)
    (output,) = outputs_of(image_request)
    actions.decide(output=output, reviewer=reviewer, verdict="approve")
    publication = publishing.publish(output=output, actor=reviewer, target="local")
    for _, callback, _ in connection.run_on_commit:
        callback()
    connection.run_on_commit.clear()
    tasks.publish_output(publication.pk)

    publication.refresh_from_db()
    assert publication.state == Publication.State.PUBLISHED
    assert (publish_root / publication.key).exists()


def test_publishing_refuses_an_output_altered_in_the_bucket(requester, reviewer, bucket):
    image_request = request_in_review(requester, variants=1)
    (output,) = outputs_of(image_request)
    actions.decide(output=output, reviewer=reviewer, verdict="approve")
    bucket.put(output.file.name, small_picture((1, 2, 3)))

    assert integrity.verify_asset(output) == "altered"
    with pytest.raises(publishing.PublishRefused, match="no longer matches its sha256"):
        publishing._check_stored_file(output)


def test_an_export_takes_its_files_from_the_bucket(requester, reviewer, bucket):
    image_request = request_in_review(requester, variants=2)
    approved = outputs_of(image_request)[0]
    actions.decide(output=approved, reviewer=reviewer, verdict="approve")

    exported = b"".join(stream_export(Asset.objects.filter(pk=approved.pk)))

    archive = zipfile.ZipFile(io.BytesIO(exported))
    (image,) = [name for name in archive.namelist() if name.startswith("images/")]
    assert hashlib.sha256(archive.read(image)).hexdigest() == approved.sha256


def test_deleting_a_stored_file_removes_the_object(requester, bucket):
    image_request = request_in_review(requester, variants=1)
    (output,) = outputs_of(image_request)
    name = output.file.name
    assert name in bucket.object_keys()

    output.file.storage.delete(name)

    assert name not in bucket.object_keys()
    assert integrity.verify_asset(output) == "missing"


def test_a_request_that_fails_to_save_leaves_no_reference_in_the_bucket(
    requester, bucket, monkeypatch
):
    from imagereview.actions import requests as request_actions

    record_creation = request_actions.record_creation

    def fail_on_the_generation(row, **kwargs):
        if isinstance(row, Generation):
            raise RuntimeError("the database went away")
        return record_creation(row, **kwargs)

    monkeypatch.setattr(request_actions, "record_creation", fail_on_the_generation)
    with pytest.raises(RuntimeError):
        actions.create_request(
            requester=requester,
            mode=ImageRequest.Mode.EDIT,
            prompt="make the sky orange",
            aspect_ratio="1:1",
            resolution="1K",
            output_format="png",
            variants=1,
            references=[ReferenceUpload(name="sky.png", stream=io.BytesIO(small_picture()))],
        )
    assert bucket.object_keys() == []


def test_the_same_image_stored_twice_keeps_two_objects(requester, bucket):
    first = request_in_review(requester, prompt="the same", variants=1)
    second = request_in_review(requester, prompt="the same", variants=1)
    (one,), (other,) = outputs_of(first), outputs_of(second)
    assert one.sha256 == other.sha256
    assert one.file.name != other.file.name

    one.file.storage.delete(one.file.name)

    assert integrity.verify_asset(other) == ""


def test_the_file_url_redirects_to_a_signed_link_after_the_permission_check(
    requester, reviewer, bucket, s3_server
):
    (output,) = outputs_of(request_in_review(requester, variants=1))
    url = reverse("asset_file", args=[output.pk, "file"])

    assert client_for(make_user("eve")).get(url).status_code == 404
    response = client_for(reviewer).get(url)
    assert response.status_code == 302
    assert response["Cache-Control"] == "private, max-age=150"
    link = response["Location"]
    assert link.startswith(f"{s3_server.url}/{bucket.name}/{output.file.name}?")
    assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["300"]

    served = httpx.get(link)
    assert served.status_code == 200
    assert hashlib.sha256(served.content).hexdigest() == output.sha256
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"].startswith("inline")
    assert served.headers["Cache-Control"].startswith("private")


def test_a_thumbnail_link_is_served_as_jpeg(requester, bucket):
    (output,) = outputs_of(request_in_review(requester, variants=1))
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "thumb"]))
    served = httpx.get(response["Location"])
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "image/jpeg"


def test_a_signed_link_expires_as_set(requester, bucket, settings):
    settings.MEDIA_URL_EXPIRE = 60
    (output,) = outputs_of(request_in_review(requester, variants=1))
    link = client_for(requester).get(reverse("asset_file", args=[output.pk, "file"]))["Location"]
    query = parse_qs(urlsplit(link).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((signed_at - datetime.now(UTC)).total_seconds()) < 5
    assert query["X-Amz-Expires"] == ["60"]
    # The test server honours any signed link (it checks neither signatures nor expiry):
    # the link's own terms are what S3 enforces.
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Signature"][0]


def test_the_bucket_refuses_an_unsigned_request(requester, bucket):
    (output,) = outputs_of(request_in_review(requester, variants=1))
    link = client_for(requester).get(reverse("asset_file", args=[output.pk, "file"]))["Location"]
    assert httpx.get(link.split("?", 1)[0]).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_command_line_downloads_through_the_signed_link(
    live_server, requester, reviewer, bucket, tmp_path, monkeypatch, capsys
):
    from imagereview.actions.tokens import issue_token
    from imagereview.cli.main import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    image_request = request_in_review(requester, variants=2, approval_quota=2)
    outputs = outputs_of(image_request)
    for output in outputs:
        actions.decide(output=output, reviewer=reviewer, verdict="approve")
    token = issue_token(user=requester, name="command line", scopes=("read",))[1]

    code = main(["download", str(tmp_path / "out"), "--url", live_server.url, "--token", token])

    assert code == 0, capsys.readouterr().err
    saved = sorted(
        hashlib.sha256(path.read_bytes()).hexdigest() for path in (tmp_path / "out").iterdir()
    )
    assert saved == sorted(output.sha256 for output in outputs)
