"""The library: every request a person may see, filtered and searched, exported as a ZIP, and
(for reviewers) the approved outputs of several requests published at once."""

from collections import Counter, defaultdict
from collections.abc import Mapping

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from imagereview.actions.publishing import PublishRefused, publish
from imagereview.forms import LibraryFilterForm, LibrarySelectionForm
from imagereview.models import Asset, Publication
from imagereview.publishing import export
from imagereview.queries.library import export_outputs, library_page
from imagereview.roles import reviewer_required

FILTER_NAMES = ("q", "state", "mode", "requester", "created_from", "created_to", "published")
P = Publication.State
# What publishing an output again found, by the state of its publication.
PUBLISH_OUTCOMES = {
    P.PENDING: (messages.SUCCESS, "on the way to publishing"),
    P.PUBLISHED: (messages.INFO, "published already"),
    P.FAILED: (messages.ERROR, "failed to publish earlier; an admin can try it again"),
}
NOTHING_TO_EXPORT = (
    "Nothing to export: select requests with approved outputs, or change the filters."
)


def _filters(data: Mapping) -> tuple[LibraryFilterForm, dict, dict[str, str]]:
    """The filters in `data`, those that are valid, and the ones set as query parameters."""
    form = LibraryFilterForm(data or None)
    form.is_valid()
    filters = form.cleaned_data if form.is_bound else {}
    kept = {name: str(filters[name]) for name in FILTER_NAMES if filters.get(name)}
    return form, filters, kept


def _library_url(kept: Mapping[str, str]) -> str:
    query = urlencode(kept)
    return reverse("library") + (f"?{query}" if query else "")


@login_required
@require_GET
def library(request: HttpRequest) -> HttpResponse:
    form, filters, kept = _filters(request.GET)
    page = library_page(viewer=request.user, filters=filters, cursor=filters.get("after", ""))
    context = {
        "form": form,
        "rows": page.rows,
        "next_cursor": page.next_cursor,
        "kept": kept,
        "filter_query": urlencode(kept),
        "paged": bool(filters.get("after")),
    }
    template = "library/list.html#results" if request.htmx else "library/list.html"
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def export_zip(request: HttpRequest) -> HttpResponse:
    """A ZIP of the approved (or published) outputs: of every request matching the filters
    (GET, or POST with `scope=matching`), or of the requests ticked (POST)."""
    data = request.POST if request.method == "POST" else request.GET
    _, filters, kept = _filters(data)
    selection = LibrarySelectionForm(data)
    selection.is_valid()
    include = selection.cleaned_data.get("include") or "approved"
    if request.method == "GET" or data.get("scope") == "matching":
        outputs = export_outputs(viewer=request.user, filters=filters, include=include)
    else:
        chosen = selection.cleaned_data.get("requests") or []
        outputs = export_outputs(viewer=request.user, request_ids=chosen, include=include)
    count = outputs.count()
    if not count:
        messages.info(request, NOTHING_TO_EXPORT)
        return redirect(_library_url(kept))
    cap = settings.EXPORT_MAX_OUTPUTS
    if count > cap:
        # The ZIP's directory grows with every file it holds: a cap keeps memory bounded.
        messages.error(
            request,
            f"This export would hold {count:,} outputs, more than the {cap:,} one export may "
            "hold: narrow the filters or select fewer requests.",
        )
        return redirect(_library_url(kept))
    response = StreamingHttpResponse(export.stream_export(outputs), content_type="application/zip")
    name = export.export_name(timezone.localdate())
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@reviewer_required
@require_POST
def publish_selected(request: HttpRequest) -> HttpResponse:
    """Publish every approved output of the ticked requests; say per request what happened."""
    _, _, kept = _filters(request.POST)
    selection = LibrarySelectionForm(request.POST)
    chosen = sorted(set(selection.cleaned_data["requests"])) if selection.is_valid() else []
    if not chosen:
        messages.error(request, "Select the requests whose approved outputs to publish.")
        return redirect(_library_url(kept))
    by_request: dict[int, list[Asset]] = defaultdict(list)
    for output in export_outputs(viewer=request.user, request_ids=chosen).order_by("pk"):
        by_request[output.request_id].append(output)
    for pk in chosen:
        if not by_request.get(pk):
            messages.info(request, f"#{pk}: no approved outputs to publish.")
            continue
        states: Counter[str] = Counter()
        for output in by_request[pk]:
            try:
                states[publish(output=output, actor=request.user).state] += 1
            except PublishRefused as refused:
                messages.error(request, f"#{pk}: {refused}")
        for state, count in states.items():
            level, words = PUBLISH_OUTCOMES[state]
            messages.add_message(
                request, level, f"#{pk}: {count} output{pluralize(count)} {words}."
            )
    return redirect(_library_url(kept))
