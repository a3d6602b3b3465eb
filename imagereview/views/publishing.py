"""Publishing: publish an approved output, retract a publication, fetch a published file."""

import mimetypes

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from imagereview.actions import publishing
from imagereview.fileserving import file_response
from imagereview.forms import PublishForm, RetractForm
from imagereview.models import Asset, Publication
from imagereview.publishing import targets
from imagereview.roles import is_reviewer, reviewer_required

PANEL = "publishing/panel.html"


def _get_output(output_id: int) -> Asset:
    return get_object_or_404(
        Asset.objects.select_related("request"), pk=output_id, kind=Asset.Kind.OUTPUT
    )


def _back(request: HttpRequest, output: Asset) -> str:
    """Where the form came from, if it is ours; else the review page of the output."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return f"/review/{output.request_id}/"


def panel_context(output: Asset, **extra: object) -> dict:
    """What the publish panel of one output shows: its publication, or whether it may have one."""
    publication = output.publications.order_by("-created_at", "-id").first()
    problem = None if publication else publishing.approval_problem(output, output.request)
    return {"output": output, "publication": publication, "publishable": problem is None} | extra


def _respond(
    request: HttpRequest, output: Asset, *, error: str = "", done: str = ""
) -> HttpResponse:
    if request.htmx:
        context = panel_context(output, publish_error=error, publish_done=done)
        return render(request, PANEL, context, status=422 if error else 200)
    if error:
        messages.error(request, error)
    if done:
        messages.success(request, done)
    return redirect(_back(request, output))


@reviewer_required
@require_POST
def publish_output(request: HttpRequest, output_id: int) -> HttpResponse:
    output = _get_output(output_id)
    form = PublishForm(request.POST)
    if not form.is_valid():
        return _respond(request, output, error=" ".join(form.errors["target"]))
    try:
        publication = publishing.publish(
            output=output, actor=request.user, target=form.cleaned_data["target"]
        )
    except publishing.PublishRefused as refused:
        return _respond(request, output, error=str(refused))
    return _respond(
        request, output, done=f"Output {output.pk} is being published to {publication.target}."
    )


@reviewer_required
@require_POST
def retract_publication(request: HttpRequest, publication_id: int) -> HttpResponse:
    publication = get_object_or_404(Publication.objects.select_related("output"), pk=publication_id)
    form = RetractForm(request.POST)
    if not form.is_valid():
        return _respond(request, publication.output, error=" ".join(form.errors["reason"]))
    try:
        publishing.retract(
            publication_id=publication.pk, actor=request.user, reason=form.cleaned_data["reason"]
        )
    except publishing.PublishRefused as refused:
        return _respond(request, publication.output, error=str(refused))
    return _respond(
        request,
        publication.output,
        done=f"The publication of output {publication.output_id} is retracted.",
    )


@reviewer_required
@require_GET
def publication_panel(request: HttpRequest, output_id: int) -> HttpResponse:
    """The panel's own poll while a publication is on its way."""
    output = _get_output(output_id)
    context = panel_context(output)
    publication = context["publication"]
    if publication is None or publication.state != Publication.State.PENDING:
        response = render(request, PANEL, context)
        response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, PANEL, context)


@login_required
@require_GET
def published_file(request: HttpRequest, publication_id: int) -> HttpResponse:
    """A published file as it is at its target, for whoever may see its request."""
    publication = get_object_or_404(
        Publication.objects.select_related("request"), pk=publication_id
    )
    if publication.request.requester_id != request.user.pk and not is_reviewer(request.user):
        raise Http404("No such publication.")
    if publication.state != Publication.State.PUBLISHED:
        raise Http404("This output is not published.")
    return file_response(
        targets.storage_for(publication.target),
        publication.key,
        content_type=mimetypes.guess_type(publication.key)[0] or "application/octet-stream",
        as_attachment=True,
        accel_location=settings.PUBLISH_ACCEL_REDIRECT,
    )
