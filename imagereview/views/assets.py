"""Stored image files, served only to signed-in users who may see their request."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET

from imagereview.fileserving import file_response
from imagereview.models import Asset
from imagereview.roles import is_reviewer


@login_required
@require_GET
def asset_file(request: HttpRequest, asset_id: int, variant: str) -> HttpResponse:
    asset = get_object_or_404(Asset.objects.select_related("request"), pk=asset_id)
    if asset.request.requester_id != request.user.pk and not is_reviewer(request.user):
        raise Http404("No such image.")
    if variant == "preview" and not asset.preview:
        # Pages link the preview only where there is one; the original stands in for the rest
        # under its own address, so no cache keeps it as a preview that a backfill later makes.
        return redirect("asset_file", asset_id=asset.pk, variant="file")
    stored, content_type = {
        "file": (asset.file, asset.content_type),
        "thumb": (asset.thumbnail, "image/jpeg"),
        "preview": (asset.preview, "image/webp"),
    }.get(variant, (None, ""))
    if not stored:
        raise Http404("No such image.")
    return file_response(
        stored.storage,
        stored.name,
        content_type=content_type,
        accel_location=settings.MEDIA_ACCEL_REDIRECT,
    )
