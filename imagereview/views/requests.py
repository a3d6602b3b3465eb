"""Requesters: ask for images and follow them to review."""

from csp.decorators import csp_update
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from imagereview import actions
from imagereview.actions import ReferenceUpload
from imagereview.actions.account import get_account
from imagereview.bodylimits import too_large_uploads
from imagereview.forms import EditRequestForm, GenerationRequestForm
from imagereview.models import Asset, Generation, ImageRequest
from imagereview.queries.annotations import attach_notes
from imagereview.queries.outcomes import mark_live_publications, request_outcome
from imagereview.roles import is_reviewer

G = Generation.State


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("review_queue" if is_reviewer(request.user) else "my_requests")


@login_required
@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest) -> HttpResponse:
    form = GenerationRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        image_request = actions.create_request(
            requester=request.user, mode=ImageRequest.Mode.GENERATE, **form.request_fields()
        )
        messages.success(request, f"Request #{image_request.pk} is queued.")
        return redirect(image_request)
    context = {"form": form, "mode": "generate"}
    return render(request, "requests/new.html", context, status=400 if form.errors else 200)


def _get_output_for_user(request: HttpRequest, asset_id: str | None) -> Asset | None:
    if not asset_id:
        return None
    output = (
        Asset.objects.select_related("request")
        .filter(pk=asset_id if asset_id.isdigit() else None, kind=Asset.Kind.OUTPUT)
        .first()
    )
    if output is None or not (
        output.request.requester_id == request.user.pk or is_reviewer(request.user)
    ):
        raise Http404("No such output.")
    return output


@login_required
@require_http_methods(["GET", "POST"])
# The chosen references are previewed from blob: URLs before they are uploaded.
@csp_update({"img-src": ["blob:"]})
def new_edit(request: HttpRequest) -> HttpResponse:
    """An edit request: uploaded references, or an earlier output to edit further."""
    source = _get_output_for_user(request, request.POST.get("source") or request.GET.get("from"))
    initial = {"prompt": source.request.prompt} if source and request.method == "GET" else None
    form = EditRequestForm(
        request.POST or None,
        request.FILES or None,
        source_output=source,
        initial=initial,
        too_large=too_large_uploads(request),
    )
    if request.method == "POST" and form.is_valid():
        uploads = [ReferenceUpload(f.name, f) for f in form.cleaned_data["references"]]
        image_request = actions.create_request(
            requester=request.user,
            mode=ImageRequest.Mode.EDIT,
            references=([source] if source else []) + uploads,
            **form.request_fields(),
        )
        messages.success(request, f"Edit request #{image_request.pk} is queued.")
        return redirect(image_request)
    context = {"form": form, "mode": "edit", "source": source}
    return render(request, "requests/new.html", context, status=400 if form.errors else 200)


def with_progress(queryset: QuerySet[ImageRequest]) -> QuerySet[ImageRequest]:
    """Annotate generation counts by state and prefetch output thumbnails."""
    return (
        queryset.select_related("requester")
        .annotate(
            generations_total=Count("generations", distinct=True),
            generations_stored=Count(
                "generations", filter=Q(generations__state=G.STORED), distinct=True
            ),
            generations_failed=Count(
                "generations",
                filter=Q(generations__state__in=[G.FAILED, G.TIMED_OUT]),
                distinct=True,
            ),
        )
        .prefetch_related(
            Prefetch(
                "assets",
                queryset=Asset.objects.filter(kind=Asset.Kind.OUTPUT).only(
                    "pk", "request_id", "thumbnail", "width", "height"
                ),
                to_attr="outputs",
            )
        )
    )


@login_required
@require_GET
def my_requests(request: HttpRequest) -> HttpResponse:
    image_requests = mark_live_publications(
        list(with_progress(ImageRequest.objects.filter(requester=request.user))[:50])
    )
    context = {
        "image_requests": image_requests,
        "live": any(r.status == ImageRequest.Status.GENERATING for r in image_requests),
    }
    template = "requests/list.html#request-rows" if request.htmx else "requests/list.html"
    return render(request, template, context)


def _get_request_for_user(request: HttpRequest, request_id: int) -> ImageRequest:
    image_request = get_object_or_404(
        ImageRequest.objects.select_related("requester"), pk=request_id
    )
    if image_request.requester_id != request.user.pk and not is_reviewer(request.user):
        # Answer as if it did not exist rather than reveal someone else's request.
        raise Http404("No such request.")
    return image_request


@login_required
@require_GET
def request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    image_request = _get_request_for_user(request, request_id)
    outcome = request_outcome(image_request, viewer=request.user)
    attach_notes([item.output for variant in outcome.variants for item in variant.outputs])
    generating = image_request.status == ImageRequest.Status.GENERATING
    context = {
        "image_request": image_request,
        "outcome": outcome,
        "references": image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"),
        "account": get_account() if generating else None,
        "live": outcome.live,
    }
    template = "requests/detail.html#progress" if request.htmx else "requests/detail.html"
    return render(request, template, context)
