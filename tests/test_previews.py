"""Previews: made when an output or reference is stored, backfilled by a command, served."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from PIL import Image

from imagereview import actions, media
from imagereview.actions.previews import lacking_preview, make_preview
from imagereview.fileserving import IMMUTABLE
from imagereview.models import Asset, Generation, ImageRequest
from tests.conftest import client_for, make_user
from tests.factories import request_in_review, stored_asset
from tests.viewer_support import RED, large_request, marked_picture, outputs_of

G = Generation.State


@pytest.fixture
def no_callbacks(settings):
    settings.KIE_CALLBACKS = False


def test_renditions_of_a_large_image_include_a_preview_and_a_thumbnail():
    small, preview = media.renditions(
        io.BytesIO(marked_picture((3000, 2000))), size=256, preview_size=2048
    )
    assert preview.size == (2048, 1365)
    assert small.size == (256, 171)


def test_renditions_of_an_image_within_the_preview_size_have_no_preview():
    small, preview = media.renditions(
        io.BytesIO(marked_picture((2048, 1000))), size=256, preview_size=2048
    )
    assert preview is None
    assert small.size == (256, 125)


def test_webp_preview_is_a_webp_of_the_same_size():
    image = Image.new("RGB", (300, 200), RED)
    decoded = Image.open(io.BytesIO(media.webp_preview(image)))
    assert (decoded.format, decoded.size) == ("WEBP", (300, 200))


def stored_generation(requester, kie, resolution: str) -> Generation:
    image_request = actions.create_request(
        requester=requester,
        prompt="a harbour at dawn",
        aspect_ratio="16:9",
        resolution=resolution,
        output_format="png",
        variants=1,
    )
    generation = image_request.generations.get()
    actions.submit_generation(generation_id=generation.pk, client=kie)
    for _ in range(200):
        actions.refresh_generation(generation_id=generation.pk, client=kie)
        generation.refresh_from_db()
        if generation.state != G.SUBMITTED:
            break
    actions.store_outputs(generation_id=generation.pk, client=kie)
    generation.refresh_from_db()
    return generation


def test_storing_a_large_output_stores_its_webp_preview(requester, kie, no_callbacks):
    generation = stored_generation(requester, kie, "2K")
    assert generation.state == G.STORED
    output = generation.outputs.get()
    assert (output.width, output.height) == (2752, 1536)
    assert (output.preview_width, output.preview_height) == (2048, 1143)
    with output.preview.open("rb") as stored:
        preview = Image.open(stored)
        assert (preview.format, preview.size) == ("WEBP", (2048, 1143))
    assert output.preview.name.startswith(f"outputs/{output.sha256[:2]}/{output.sha256}/")
    assert output.preview.size < output.bytes
    with output.thumbnail.open("rb") as stored:
        assert max(Image.open(stored).size) == 384


def test_storing_an_output_within_the_preview_size_stores_no_preview(requester, kie, no_callbacks):
    output = stored_generation(requester, kie, "1K").outputs.get()
    assert (output.width, output.height) == (1376, 768)
    assert not output.preview and output.preview_width is None
    assert output.thumbnail


def test_a_large_reference_gets_a_preview_when_the_request_is_made(requester):
    image_request = actions.create_request(
        requester=requester,
        prompt="make the wall blue",
        aspect_ratio="3:2",
        resolution="4K",
        output_format="png",
        variants=1,
        mode=ImageRequest.Mode.EDIT,
        references=[
            actions.ReferenceUpload(
                name="wall.png", stream=io.BytesIO(marked_picture((3000, 2000)))
            )
        ],
    )
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    assert (reference.preview_width, reference.preview_height) == (2048, 1365)
    assert reference.preview.name.endswith("preview.webp")


def test_make_previews_backfills_large_assets_once(requester, capsys):
    image_request = request_in_review(requester, variants=1, real_images=False)
    small = outputs_of(image_request)[0]
    large = stored_asset(image_request, marked_picture(), kind=Asset.Kind.REFERENCE, index=0)
    assert list(lacking_preview()) == [large]

    call_command("make_previews", batch_size=1)
    large.refresh_from_db()
    small.refresh_from_db()
    assert (large.preview_width, large.preview_height) == (2048, 1365)
    assert not small.preview
    assert "Stored 1 previews; 0 failed." in capsys.readouterr().out

    call_command("make_previews")
    assert "Stored 0 previews; 0 failed." in capsys.readouterr().out
    assert make_preview(asset_id=large.pk) is False


def test_make_previews_shares_the_preview_of_an_asset_with_the_same_file(requester):
    image_request = large_request(requester, variants=1)
    output = outputs_of(image_request)[0]
    copy = Asset.objects.create(
        kind=Asset.Kind.REFERENCE,
        request=image_request,
        index=0,
        file=output.file.name,
        sha256=output.sha256,
        bytes=output.bytes,
        width=output.width,
        height=output.height,
        content_type=output.content_type,
    )
    assert make_preview(asset_id=copy.pk) is True
    copy.refresh_from_db()
    assert copy.preview.name == output.preview.name


def test_make_previews_reports_an_unreadable_file_and_goes_on(requester, capsys):
    image_request = request_in_review(requester, variants=1, real_images=False)
    broken = stored_asset(image_request, marked_picture(), kind=Asset.Kind.REFERENCE, index=0)
    broken.file.storage.delete(broken.file.name)
    later = stored_asset(
        image_request, marked_picture((2100, 900)), kind=Asset.Kind.REFERENCE, index=1
    )
    with pytest.raises(CommandError):
        call_command("make_previews")
    later.refresh_from_db()
    assert later.preview
    assert f"asset {broken.pk}:" in capsys.readouterr().err


def test_the_preview_is_served_as_webp_with_a_long_private_cache(requester, reviewer):
    output = outputs_of(large_request(requester, variants=1))[0]
    for user in (requester, reviewer):
        response = client_for(user).get(reverse("asset_file", args=[output.pk, "preview"]))
        assert response.status_code == 200
        assert response["Content-Type"] == "image/webp"
        assert response["Cache-Control"] == IMMUTABLE == "private, max-age=31536000, immutable"
        assert Image.open(io.BytesIO(b"".join(response.streaming_content))).size == (2048, 1365)


def test_an_asset_without_a_preview_sends_the_preview_address_to_its_original(requester):
    output = outputs_of(request_in_review(requester, variants=1, real_images=False))[0]
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "preview"]))
    assert response.status_code == 302
    assert response["Location"] == reverse("asset_file", args=[output.pk, "file"])


def test_the_preview_is_refused_to_another_requester_and_asks_a_stranger_to_log_in(requester):
    output = outputs_of(large_request(requester, variants=1))[0]
    url = reverse("asset_file", args=[output.pk, "preview"])
    assert client_for(make_user("eve")).get(url).status_code == 404
    response = Client().get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_unknown_variant_is_not_found(requester):
    output = outputs_of(request_in_review(requester, variants=1, real_images=False))[0]
    response = client_for(requester).get(reverse("asset_file", args=[output.pk, "poster"]))
    assert response.status_code == 404
