"""Notes on outputs: the markers and the list beside an image, adding, resolving, reopening.

htmx (and static/js/annotations.js) get the output's notes back as a fragment; a plain form
post goes back to the page it came from.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from imagereview.actions import annotations as actions
from imagereview.forms import AnnotationForm, error_text
from imagereview.models import Annotation, Asset
from imagereview.queries.annotations import attach_notes
from imagereview.roles import is_reviewer, reviewer_required

FRAGMENT = "review/_annotations.html#annotations"


@login_required
@require_http_methods(["GET", "POST"])
def output_notes(request: HttpRequest, output_id: int) -> HttpResponse:
    """The notes on an output (GET: anyone who may see it), or a new one (POST: reviewers)."""
    output = _get_output_for_user(request, output_id)
    if request.method == "GET":
        return _notes_response(request, output)
    if not is_reviewer(request.user):
        return HttpResponse("Only reviewers can add notes.", status=403)
    form = AnnotationForm(request.POST)
    if not form.is_valid():
        error = error_text(form)
        return _notes_response(request, output, error=error)
    try:
        actions.add_annotation(output=output, author=request.user, **form.cleaned_data)
    except actions.AnnotationRefused as refused:
        return _notes_response(request, output, error=str(refused))
    return _notes_response(request, output)


@reviewer_required
@require_POST
def resolve_note(request: HttpRequest, annotation_id: int) -> HttpResponse:
    return _change_note(request, annotation_id, actions.resolve_annotation)


@reviewer_required
@require_POST
def reopen_note(request: HttpRequest, annotation_id: int) -> HttpResponse:
    return _change_note(request, annotation_id, actions.reopen_annotation)


def _change_note(request: HttpRequest, annotation_id: int, action) -> HttpResponse:
    annotation = get_object_or_404(
        Annotation.objects.select_related("output__request"), pk=annotation_id
    )
    action(annotation_id=annotation.pk, reviewer=request.user)
    return _notes_response(request, annotation.output)


def _get_output_for_user(request: HttpRequest, output_id: int) -> Asset:
    output = get_object_or_404(
        Asset.objects.select_related("request"), pk=output_id, kind=Asset.Kind.OUTPUT
    )
    if output.request.requester_id != request.user.pk and not is_reviewer(request.user):
        raise Http404("No such image.")
    return output


def _notes_response(request: HttpRequest, output: Asset, *, error: str = "") -> HttpResponse:
    if request.htmx or request.method == "GET":
        attach_notes([output])
        context = {
            "output": output,
            "notes": output.notes,
            "may_annotate": is_reviewer(request.user),
            "annotation_error": error,
        }
        return render(request, FRAGMENT, context, status=422 if error else 200)
    if error:
        messages.error(request, error)
    return redirect(_back(request, output))


def _back(request: HttpRequest, output: Asset) -> str:
    """The page the form was on, else the output's review page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("review_detail", args=[output.request_id]) + f"#output-{output.pk}"
