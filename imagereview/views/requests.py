"""Requesters: ask for images and follow them to review."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from imagereview import actions
from imagereview.forms import GenerationRequestForm
from imagereview.models import Asset, Generation, ImageRequest
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
        image_request = actions.create_request(requester=request.user, **form.cleaned_data)
        messages.success(request, f"Request #{image_request.pk} is queued.")
        return redirect(image_request)
    status = 400 if form.errors else 200
    return render(request, "requests/new.html", {"form": form}, status=status)


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
    image_requests = list(with_progress(ImageRequest.objects.filter(requester=request.user))[:50])
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
    generations = list(
        image_request.generations.prefetch_related("outputs").order_by("variant", "id")
    )
    context = {
        "image_request": image_request,
        "generations": generations,
        "live": image_request.status == ImageRequest.Status.GENERATING,
    }
    template = "requests/detail.html#progress" if request.htmx else "requests/detail.html"
    return render(request, template, context)
