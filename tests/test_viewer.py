"""The full-size viewer page, and the review page's previews and links to it."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from imagereview.models import Asset
from tests.conftest import client_for, make_user
from tests.factories import request_in_review
from tests.viewer_support import large_request, marked_picture, outputs_of

pytestmark = pytest.mark.django_db


def viewer_url(output: Asset, query: str = "") -> str:
    return reverse("view_output", args=[output.pk]) + query


def file_url(asset: Asset, variant: str) -> str:
    return reverse("asset_file", args=[asset.pk, variant])


def test_viewer_shows_the_preview_with_the_original_to_load(requester, reviewer):
    image_request = large_request(requester, variants=3)
    first, second, third = outputs_of(image_request)
    response = client_for(reviewer).get(viewer_url(second))
    assert response.status_code == 200
    body = response.content.decode()
    box = re.search(r"<div class=\"viewer-image\" data-viewer-image[^>]*>", body).group(0)
    assert f'data-original="{file_url(second, "file")}"' in box
    box = " ".join(box.split())
    assert 'data-width="3000" data-height="2000" data-preview-width="2048"' in box
    assert 'data-loaded="preview"' in box
    assert f'<img src="{file_url(second, "preview")}" width="2048" height="1365"' in body
    assert 'id="viewer-annotations"' in body
    assert "Variant 2 (2 of 3)" in body
    viewer = re.search(r'<div class="viewer" id="viewer"[^>]*>', body).group(0)
    assert f'data-previous-variant="{viewer_url(first)}"' in viewer
    assert f'data-next-variant="{viewer_url(third)}"' in viewer
    assert 'data-previous-revision=""' in viewer and 'data-next-revision=""' in viewer
    back = reverse("review_detail", args=[image_request.pk]) + f"#output-{second.pk}"
    assert f'data-back="{back}"' in viewer
    assert image_request.prompt in body


def test_viewer_steps_from_the_last_variant_round_to_the_first(requester, reviewer):
    first, second = outputs_of(large_request(requester, variants=2))
    body = client_for(reviewer).get(viewer_url(second)).content.decode()
    assert f'data-next-variant="{viewer_url(first)}"' in body


def test_viewer_offers_the_other_variants_the_reference_and_earlier_revisions(requester, reviewer):
    original = large_request(requester, variants=2, prompt="first try")
    revision = large_request(
        requester, variants=2, parent=original, reference=marked_picture((2400, 1600))
    )
    reference = revision.assets.get(kind=Asset.Kind.REFERENCE)
    old_first, old_second = outputs_of(original)
    new_first, new_second = outputs_of(revision)
    body = client_for(reviewer).get(viewer_url(new_second)).content.decode()
    options = re.findall(r'<option value="(\d+)"[^>]*data-src="([^"]+)"[^>]*>([^<]+)<', body)
    assert options == [
        (str(new_first.pk), file_url(new_first, "preview"), "Variant 1"),
        (str(reference.pk), file_url(reference, "preview"), "Reference 1"),
        (str(old_first.pk), file_url(old_first, "preview"), "v1 · Variant 1"),
        (str(old_second.pk), file_url(old_second, "preview"), "v1 · Variant 2"),
    ]
    assert f'data-previous-revision="{viewer_url(old_second)}"' in body
    older = client_for(reviewer).get(viewer_url(old_second)).content.decode()
    assert f'data-next-revision="{viewer_url(new_second)}"' in older
    assert 'data-previous-revision=""' in older


def test_viewer_is_open_to_the_requester_with_the_way_back_to_their_request(requester):
    image_request = request_in_review(requester, variants=1, real_images=False)
    output = outputs_of(image_request)[0]
    response = client_for(requester).get(viewer_url(output))
    assert response.status_code == 200
    body = response.content.decode()
    assert f'data-back="{image_request.get_absolute_url()}#output-{output.pk}"' in body
    # A small output has no preview: the original is shown as it is.
    assert f'<img src="{file_url(output, "file")}" width="64" height="64"' in body
    assert 'data-loaded="original"' in body


def test_viewer_hides_another_requesters_output(requester):
    output = outputs_of(request_in_review(requester, variants=1, real_images=False))[0]
    assert client_for(make_user("eve")).get(viewer_url(output)).status_code == 404


def test_viewer_asks_a_stranger_to_log_in(requester):
    output = outputs_of(request_in_review(requester, variants=1, real_images=False))[0]
    response = Client().get(viewer_url(output))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_viewer_is_for_outputs_only(requester, reviewer):
    image_request = request_in_review(requester, variants=1, real_images=False, mode="edit")
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    assert client_for(reviewer).get(viewer_url(reference)).status_code == 404


def test_viewer_refuses_anything_but_get(requester, reviewer):
    output = outputs_of(request_in_review(requester, variants=1, real_images=False))[0]
    assert client_for(reviewer).post(viewer_url(output)).status_code == 405


def test_review_page_shows_previews_and_links_each_output_to_the_viewer(requester, reviewer):
    image_request = large_request(requester, variants=2, reference=marked_picture((2400, 1600)))
    reference = image_request.assets.get(kind=Asset.Kind.REFERENCE)
    body = client_for(reviewer).get(reverse("review_detail", args=[image_request.pk])).content
    body = body.decode()
    for output in outputs_of(image_request):
        assert (
            f'<img src="{file_url(output, "preview")}" width="2048" height="1365" '
            f'data-original="{file_url(output, "file")}" data-original-width="3000" '
            'data-original-height="2000"'
        ) in body
        assert f'<a class="view-full" href="{viewer_url(output)}">' in body
        assert f'data-viewer="{viewer_url(output)}"' in body
    assert f'<img src="{file_url(reference, "preview")}"' in body
    assert f'src="{file_url(outputs_of(image_request)[0], "file")}"' not in body


def test_review_page_fragment_keeps_the_previews(requester, reviewer):
    image_request = large_request(requester, variants=1)
    output = outputs_of(image_request)[0]
    response = client_for(reviewer).get(
        reverse("review_detail", args=[image_request.pk]), headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="review-body"')
    assert f'<img src="{file_url(output, "preview")}"' in body
