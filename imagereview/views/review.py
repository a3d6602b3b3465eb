"""Reviewers: the queue of requests awaiting review and the review page."""

from django.contrib import messages
from django.db.models import Count, Prefetch, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from imagereview import actions
from imagereview.forms import DecisionForm
from imagereview.models import Asset, Decision, ImageRequest
from imagereview.roles import reviewer_required
from imagereview.views.requests import with_progress

R = ImageRequest.Status


@reviewer_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    awaiting = with_progress(ImageRequest.objects.filter(status=R.IN_REVIEW)).order_by(
        "created_at", "id"
    )
    counts = dict(ImageRequest.objects.values_list("status").annotate(n=Count("id")).order_by())
    context = {
        "image_requests": list(awaiting[:50]),
        "counts": [(status, label, counts.get(status, 0)) for status, label in R.choices],
    }
    template = "review/queue.html#queue" if request.htmx else "review/queue.html"
    return render(request, template, context)


def _review_context(image_request: ImageRequest) -> dict:
    outputs = list(
        image_request.assets.filter(kind=Asset.Kind.OUTPUT)
        .select_related("generation")
        .prefetch_related(
            Prefetch("decisions", queryset=Decision.objects.select_related("reviewer"))
        )
        .order_by("generation__variant", "index")
    )
    verdicts = actions.latest_verdicts(image_request)
    for output in outputs:
        output.verdict = verdicts.get(output.pk, "")
    next_request = (
        ImageRequest.objects.filter(status=R.IN_REVIEW)
        .exclude(pk=image_request.pk)
        .order_by("created_at", "id")
        .only("pk")
        .first()
    )
    return {
        "image_request": image_request,
        "outputs": outputs,
        "references": image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"),
        "credits": image_request.generations.aggregate(total=Sum("credits"))["total"] or 0,
        "failed_generations": image_request.generations.filter(state__in=["failed", "timed_out"]),
        "decision_form": DecisionForm(),
        "reasons": Decision.Reason.choices,
        "next_request": next_request,
    }


@reviewer_required
@require_GET
def review_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    image_request = get_object_or_404(
        ImageRequest.objects.select_related("requester"), pk=request_id
    )
    return render(request, "review/detail.html", _review_context(image_request))


@reviewer_required
@require_POST
def decide(request: HttpRequest, output_id: int) -> HttpResponse:
    output = get_object_or_404(
        Asset.objects.select_related("request"), pk=output_id, kind=Asset.Kind.OUTPUT
    )
    form = DecisionForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            actions.decide(output=output, reviewer=request.user, **form.cleaned_data)
        except actions.DecisionRefused as refused:
            error = str(refused)
    else:
        error = " ".join(message for errors in form.errors.values() for message in errors)
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("review_detail", output.request_id)
    image_request = ImageRequest.objects.select_related("requester").get(pk=output.request_id)
    context = _review_context(image_request) | {"error": error, "error_output_id": output.pk}
    return render(request, "review/detail.html#review-body", context, status=422 if error else 200)
