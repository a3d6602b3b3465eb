"""How stored and published files are answered: streamed (development), handed to nginx
with X-Accel-Redirect (local files in production), or redirected to a signed bucket link."""

import hashlib
import os
import subprocess
import sys

import pytest
from django.urls import reverse

from imagereview.models import Asset
from tests.conftest import ROOT, client_for, make_user
from tests.factories import publication_of, request_in_review


@pytest.fixture
def output(requester) -> Asset:
    image_request = request_in_review(requester, variants=1, real_images=False)
    return image_request.assets.get(kind=Asset.Kind.OUTPUT)


@pytest.fixture
def published(output, publish_root):
    publication = publication_of(output)
    (publish_root / publication.key).parent.mkdir(parents=True)
    (publish_root / publication.key).write_bytes(output.file.read())
    return publication


def test_a_file_is_streamed_by_default(output, requester):
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "file"]))
    assert response.status_code == 200
    assert "X-Accel-Redirect" not in response
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == output.sha256
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="image.png"'
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"


def test_a_thumbnail_is_streamed_as_jpeg(output, requester):
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "thumb"]))
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"


def test_with_accel_redirect_nginx_sends_the_file(output, requester, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media/"
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "file"]))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected/media/{output.file.name}"
    assert response.content == b""
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="image.png"'
    assert response["Cache-Control"] == "private, max-age=31536000, immutable"


def test_accel_redirect_comes_only_after_the_permission_check(output, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media/"
    url = reverse("asset_file", args=[output.pk, "file"])
    stranger = client_for(make_user("eve")).get(url)
    assert stranger.status_code == 404
    assert "X-Accel-Redirect" not in stranger
    anonymous = client_for(make_user("mallory"))
    anonymous.logout()
    signed_out = anonymous.get(url)
    assert signed_out.status_code == 302
    assert signed_out["Location"].startswith(reverse("login"))
    assert "X-Accel-Redirect" not in signed_out


def test_the_api_file_uses_accel_redirect_too(output, requester, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media/"
    response = client_for(requester).get(f"/api/v1/outputs/{output.pk}/file")
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected/media/{output.file.name}"


def test_a_published_file_is_streamed_as_a_download_by_default(published, requester):
    response = client_for(requester).get(reverse("published_file", args=[published.pk]))
    assert response.status_code == 200
    name = published.key.rsplit("/", 1)[-1]
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response["Content-Type"] == "image/png"
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == published.sha256


def test_a_published_file_goes_through_its_own_accel_location(published, requester, settings):
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media/"
    settings.PUBLISH_ACCEL_REDIRECT = "/protected/published/"
    response = client_for(requester).get(reverse("published_file", args=[published.pk]))
    assert response["X-Accel-Redirect"] == f"/protected/published/{published.key}"
    name = published.key.rsplit("/", 1)[-1]
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert (
        client_for(make_user("eve")).get(reverse("published_file", args=[published.pk])).status_code
        == 404
    )


def test_a_name_with_odd_characters_is_quoted_for_nginx(requester, settings, output):
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media"
    output.file.name = "outputs/ab/ab cd/ü?.png"
    output.save(update_fields=["file"])
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "file"]))
    assert response["X-Accel-Redirect"] == "/protected/media/outputs/ab/ab%20cd/%C3%BC%3F.png"


def media_settings(tmp_path, **env: str) -> list[str]:
    """The default storage backend and the img-src of the CSP, as settings.py makes them."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "STORAGE_", "MEDIA_")) and key != "DJANGO_ENV"
    }
    environment |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "imagereview.settings"}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.STORAGES['default']['BACKEND']); "
        "print(' '.join(s.CONTENT_SECURITY_POLICY['DIRECTIVES']['img-src'])); "
        "print(s.STORAGES['default'].get('OPTIONS', {}).get('querystring_expire'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_local_files_are_the_default_and_images_come_from_self_only(tmp_path):
    assert media_settings(tmp_path) == [
        "django.core.files.storage.FileSystemStorage",
        "'self'",
        "None",
    ]


def test_a_bucket_name_switches_to_s3_and_lets_pages_show_its_images(tmp_path):
    assert media_settings(
        tmp_path,
        AWS_STORAGE_BUCKET_NAME="media",
        AWS_S3_ENDPOINT_URL="https://objects.example.net:9000/",
        AWS_QUERYSTRING_EXPIRE="120",
    ) == ["storages.backends.s3.S3Storage", "'self' https://objects.example.net:9000", "120"]


def test_virtual_host_addressing_puts_the_bucket_in_the_image_origin(tmp_path):
    _, img_src, _ = media_settings(
        tmp_path,
        AWS_STORAGE_BUCKET_NAME="media",
        AWS_S3_ENDPOINT_URL="https://objects.example.net",
        AWS_S3_ADDRESSING_STYLE="virtual",
    )
    assert img_src == "'self' https://media.objects.example.net"


def test_on_aws_pages_may_show_images_from_the_bucket_host(tmp_path):
    backend, img_src, expire = media_settings(
        tmp_path,
        STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="media",
        AWS_S3_REGION_NAME="eu-west-1",
    )
    assert img_src.split() == [
        "'self'",
        "https://media.s3.amazonaws.com",
        "https://media.s3.eu-west-1.amazonaws.com",
    ]
    assert expire == "300"


def test_s3_without_a_bucket_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="needs AWS_STORAGE_BUCKET_NAME"):
        media_settings(tmp_path, STORAGE_BACKEND="s3")
