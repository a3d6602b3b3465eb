"""Reviewers: the queue of requests awaiting review, the review page and decisions."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling

from imagereview import actions
from imagereview.diffs import prompt_diff
from imagereview.forms import (
    PRIORITY_NAMES,
    BulkDecisionForm,
    ChangesForm,
    DecisionForm,
    QueueFilterForm,
    error_text,
)
from imagereview.models import Asset, Decision, ImageRequest, Publication
from imagereview.queries.annotations import attach_answered, attach_notes
from imagereview.queries.pages import Page, encode_cursor
from imagereview.queries.queue import status_counts
from imagereview.queries.queue_order import first_in_order, neighbour, queue_page
from imagereview.queries.revisions import revision_chain
from imagereview.queries.stages import in_stages_of, stage_counts, stage_panel
from imagereview.roles import reviewer_required
from imagereview.workflows import stage_rule

R = ImageRequest.Status
PAGE_SIZE = 24
FILTER_NAMES = ("mode", "requester", "flagged", "age", "sort", "overdue", "priority", "stage")
AGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


def _queue_queryset(filters: dict) -> QuerySet[ImageRequest]:
    queryset = ImageRequest.objects.filter(status=R.IN_REVIEW)
    if filters.get("mode"):
        queryset = queryset.filter(mode=filters["mode"])
    if filters.get("requester"):
        queryset = queryset.filter(requester__username=filters["requester"])
    if filters.get("flagged"):
        queryset = queryset.filter(flagged=True)
    age = filters.get("age")
    if age in AGES:
        cutoff = timezone.now() - AGES[age]
        queryset = queryset.filter(created_at__gte=cutoff)
    elif age == "older":
        queryset = queryset.filter(created_at__lt=timezone.now() - AGES["day"])
    if filters.get("overdue"):
        queryset = queryset.filter(due_at__lt=timezone.now())
    if filters.get("priority") in PRIORITY_NAMES:
        queryset = queryset.filter(priority__gte=PRIORITY_NAMES[filters["priority"]])
    if filters.get("stage") == "none":
        queryset = queryset.filter(stage__isnull=True)
    elif filters.get("stage"):
        queryset = queryset.filter(stage_id=filters["stage"])
    return queryset


def _queue_filters(request: HttpRequest) -> tuple[QueueFilterForm, dict, str]:
    """The queue's filters from the query string, and the query that carries them on."""
    form = QueueFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    kept = {name: filters[name] for name in FILTER_NAMES if filters.get(name)}
    for name in ("flagged", "overdue"):
        if kept.get(name):
            kept[name] = "on"
    return form, filters, urlencode(kept)


def _with_query(url: str, query: str) -> str:
    return f"{url}?{query}" if query else url


def queue_cursor(image_request: ImageRequest) -> str:
    """The `after=` value of the queue page that starts just past this request."""
    return encode_cursor(image_request)


def _page(queryset: QuerySet[ImageRequest], *, sort: str, cursor: str) -> Page:
    """One page of the queue, each request with its output thumbnails."""
    thumbnails = Asset.objects.filter(kind=Asset.Kind.OUTPUT).only("pk", "request_id", "thumbnail")
    return queue_page(
        queryset.select_related("requester", "claimed_by", "stage").prefetch_related(
            Prefetch("assets", queryset=thumbnails, to_attr="outputs")
        ),
        sort=sort,
        cursor=cursor,
        size=PAGE_SIZE,
    )


@reviewer_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    form, filters, filter_query = _queue_filters(request)
    sort, cursor = filters.get("sort") or "oldest", filters.get("after", "")
    queryset = in_stages_of(_queue_queryset(filters), request.user)
    rows, next_cursor = _page(queryset, sort=sort, cursor=cursor)
    for row in rows:
        row.reviewed_by = actions.claims.other_claimant(row, request.user)
        row.own = actions.review.reviews_own_request(row, request.user)
    context = {
        "form": form,
        "image_requests": rows,
        "next_cursor": next_cursor,
        "filter_query": filter_query,
        "queue_suffix": _with_query("", filter_query),
        "paged": bool(filters.get("after")),
        "counts": status_counts(),
        "stage_counts": stage_counts(request.user),
        "reasons": Decision.Reason.choices,
        "undoable": actions.undo.undoable_decision(request.user),
        "seen_decision_id": Decision.objects.order_by("-pk").values_list("pk", flat=True).first()
        or 0,
    }
    template = "review/queue.html#queue" if request.htmx else "review/queue.html"
    return render(request, template, context)


@reviewer_required
@require_POST
def bulk_decide(request: HttpRequest) -> HttpResponse:
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(reverse("review_queue") + "?" + request.POST.get("filter_query", ""))
    data = form.cleaned_data
    batch = uuid.uuid4()  # one undo takes back the whole action
    for pk in sorted(set(data["requests"])):
        try:
            outcome = actions.review.decide_undecided(
                image_request_id=pk,
                reviewer=request.user,
                verdict=data["verdict"],
                reason=data["reason"],
                comment=data["comment"],
                seen_decision_id=data["seen_decision_id"],
                batch=batch,
            )
        except actions.DecisionRefused as refused:
            messages.error(request, f"#{pk}: {refused}")
            continue
        if outcome.decided:
            done = "approved" if data["verdict"] == Decision.Verdict.APPROVE else "rejected"
            messages.success(
                request,
                f"#{pk}: {outcome.decided} output{pluralize(outcome.decided)} {done}; "
                f"the request is {R(outcome.status).label.lower()}.",
            )
        elif not outcome.conflicts:
            messages.info(request, f"#{pk}: nothing was left for you to decide.")
        if outcome.conflicts:
            messages.error(
                request,
                f"#{pk}: {', '.join(outcome.conflicts)} after the queue was shown, so you did "
                "not decide it. Open the request to review their decision.",
            )
    return redirect(reverse("review_queue") + "?" + request.POST.get("filter_query", ""))


def _revision_chain(image_request: ImageRequest) -> list[dict]:
    """Every version of the request, oldest first, with each prompt's changes."""
    chain = revision_chain(image_request)
    versions = []
    for previous, version in zip([None, *chain], chain, strict=False):
        versions.append(
            {
                "request": version,
                "current": version.pk == image_request.pk,
                "diff": prompt_diff(previous.prompt, version.prompt) if previous else None,
            }
        )
    return versions


def _reviewable(queryset: QuerySet[ImageRequest], reviewer) -> QuerySet[ImageRequest]:
    """Leave out what is not this reviewer's to open next: requests another reviewer has
    open, their own when they may not approve them, and those they have decided throughout."""
    cutoff = timezone.now() - actions.claims.CLAIM_TTL
    queryset = queryset.filter(
        Q(claimed_by__isnull=True) | Q(claimed_by=reviewer) | Q(claimed_at__lt=cutoff)
    )
    if settings.REVIEW_FORBID_SELF_APPROVAL:
        queryset = queryset.exclude(requester=reviewer)
    queryset = in_stages_of(queryset, reviewer)
    # Decided in the stage the request is in now (an earlier stage's verdicts do not count).
    mine = Decision.objects.filter(
        Q(stage__isnull=True) | Q(stage=OuterRef("request__stage")),
        output=OuterRef("pk"),
        reviewer=reviewer,
        undone_at__isnull=True,
    )
    undecided = Asset.objects.filter(request=OuterRef("pk"), kind=Asset.Kind.OUTPUT).exclude(
        Exists(mine)
    )
    return queryset.filter(Exists(undecided))


def _next_in_queue(
    image_request: ImageRequest, reviewer, filters: dict, *, backwards: bool = False
) -> ImageRequest | None:
    """The item after this one in the queue as the reviewer filtered and sorted it.

    Going forward wraps round to the start of the queue; going back stops at its start.
    """
    queryset = _reviewable(_queue_queryset(filters), reviewer).exclude(pk=image_request.pk)
    sort = filters.get("sort") or "oldest"
    found = neighbour(queryset, image_request, sort=sort, backwards=backwards)
    if found is None and not backwards:
        found = first_in_order(queryset, sort=sort)
    return found


def _next_url(request: HttpRequest, image_request: ImageRequest) -> str:
    """Where the reviewer goes once this request is done: the next item, else the queue."""
    _, filters, query = _queue_filters(request)
    found = _next_in_queue(image_request, request.user, filters)
    target = reverse("review_detail", args=[found.pk]) if found else reverse("review_queue")
    return _with_query(target, query)


def _review_context(request: HttpRequest, image_request: ImageRequest) -> dict:
    reviewer = request.user
    _, filters, queue_query = _queue_filters(request)
    outputs = list(
        image_request.assets.filter(kind=Asset.Kind.OUTPUT)
        .select_related("generation")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=Decision.objects.select_related("reviewer").order_by("-created_at", "-id"),
            ),
            Prefetch(
                "publications",
                queryset=Publication.objects.select_related("retracted_by").order_by(
                    "-created_at", "-id"
                ),
            ),
        )
        .order_by("generation__variant", "generation_id", "index")
    )
    standings = actions.tally(image_request, viewer=reviewer)
    rule = stage_rule(image_request)
    initial = ChangesForm.initial_for(image_request)
    attach_notes(outputs)
    for output in outputs:
        standing = standings.get(output.pk)
        output.verdict = standing.verdict if standing else ""
        output.approvals = len(standing.approvals) if standing else 0
        output.mine = standing.decided_by_me if standing else ""
        output.seen = output.decisions.all()[0].pk if output.decisions.all() else 0
        output.publication = next(iter(output.publications.all()), None)
        output.publishable = bool(
            standing and rule.following is None and standing.approved(rule.required_approvals)
        )
        # In a later stage, an output the stage before did not pass is not decided again.
        output.held_back = output.pk not in rule.outputs
        output.changes_form = ChangesForm(
            initial=initial, auto_id=_changes_id(output), output=output
        )
    references = list(image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index"))
    return {
        "image_request": image_request,
        "outputs": outputs,
        "references": references,
        "credits": image_request.generations.aggregate(total=Sum("credits"))["total"] or 0,
        "failed_generations": image_request.generations.filter(state__in=["failed", "timed_out"]),
        "versions": attach_answered(_revision_chain(image_request)),
        "reasons": Decision.Reason.choices,
        "next_request": _next_in_queue(image_request, reviewer, filters),
        "previous_request": _next_in_queue(image_request, reviewer, filters, backwards=True),
        "queue_suffix": _with_query("", queue_query),
        "claim_renew_seconds": int(actions.claims.CLAIM_RENEW.total_seconds()),
        "own_request": image_request.requester_id == reviewer.pk,
        "may_not_review": actions.review.reviews_own_request(image_request, reviewer),
        "required_approvals": rule.required_approvals,
        "stages": stage_panel(image_request, reviewer),
        "undoable": actions.undo.undoable_decision(reviewer),
    }


@reviewer_required
@require_GET
def review_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    image_request = get_object_or_404(
        ImageRequest.objects.select_related("requester", "claimed_by"), pk=request_id
    )
    context = _review_context(request, image_request)
    if image_request.status == R.IN_REVIEW:
        # Reading the page writes nothing: the page claims the request itself once loaded.
        context["claimed_by"] = actions.claims.other_claimant(image_request, request.user)
    template = "review/detail.html#review-body" if request.htmx else "review/detail.html"
    return render(request, template, context)


@reviewer_required
@require_POST
def claim(request: HttpRequest, request_id: int) -> HttpResponse:
    """Take or renew the claim: sent by the open review page on load and then periodically."""
    image_request = get_object_or_404(
        ImageRequest.objects.select_related("claimed_by"), pk=request_id
    )
    if image_request.status != R.IN_REVIEW:
        return HttpResponseStopPolling()
    context = {"claimed_by": actions.claim(image_request, request.user)}
    return render(request, "review/detail.html#claim-label", context)


@reviewer_required
@require_POST
def release_claim(request: HttpRequest, request_id: int) -> HttpResponse:
    """End the reviewer's claim: sent by the review page as it closes."""
    actions.claims.release_claim(image_request_id=request_id, reviewer=request.user)
    return HttpResponse(status=204)


def _after_decision(request: HttpRequest, image_request: ImageRequest, **extra) -> HttpResponse:
    """Show the updated page; once the request is decided, or has moved on to its next stage,
    open the next item by itself."""
    stage_before = image_request.stage_id
    image_request.refresh_from_db()
    if not request.htmx and "changes_form" not in extra:
        _, _, query = _queue_filters(request)
        return redirect(_with_query(reverse("review_detail", args=[image_request.pk]), query))
    moved_on = image_request.stage_id != stage_before
    if (image_request.status != R.IN_REVIEW or moved_on) and not extra:
        return HttpResponseClientRedirect(_next_url(request, image_request))
    context = _review_context(request, image_request) | extra
    for output in context["outputs"]:
        if output.pk == extra.get("error_output_id") and "changes_form" in extra:
            output.changes_form = extra["changes_form"]  # what was typed, with its errors
    status = 409 if extra.get("conflict") else 422 if extra.get("error") else 200
    template = "review/detail.html#review-body" if request.htmx else "review/detail.html"
    return render(request, template, context, status=status)


@reviewer_required
@require_POST
def decide(request: HttpRequest, output_id: int) -> HttpResponse:
    output = get_object_or_404(
        Asset.objects.select_related("request"), pk=output_id, kind=Asset.Kind.OUTPUT
    )
    form = DecisionForm(request.POST)
    extra: dict = {}
    if form.is_valid():
        try:
            actions.decide(output=output, reviewer=request.user, **form.cleaned_data)
        except actions.DecisionConflict as conflict:
            extra = {"error": str(conflict), "conflict": True}
        except actions.DecisionRefused as refused:
            extra = {"error": str(refused)}
    else:
        extra = {"error": error_text(form)}
    if extra:
        extra["error_output_id"] = output.pk
        if not request.htmx:
            messages.error(request, extra["error"])
    return _after_decision(request, output.request, **extra)


@reviewer_required
@require_POST
def request_changes(request: HttpRequest, output_id: int) -> HttpResponse:
    output = get_object_or_404(
        Asset.objects.select_related("request"), pk=output_id, kind=Asset.Kind.OUTPUT
    )
    form = ChangesForm(request.POST, auto_id=_changes_id(output), output=output)
    if form.is_valid():
        try:
            revision = actions.request_changes(
                output=output, reviewer=request.user, **form.request_fields()
            )
        except actions.DecisionRefused as refused:
            return _after_decision(
                request, output.request, error=str(refused), error_output_id=output.pk
            )
        messages.success(request, f"Revision #{revision.pk} is submitted.")
        target = _next_url(request, output.request)
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    return _after_decision(
        request,
        output.request,
        error="The revision was not submitted: correct the marked fields.",
        error_output_id=output.pk,
        changes_form=form,
    )


def _changes_id(output: Asset) -> str:
    """Ids for one output's request-changes fields, distinct from the other outputs'."""
    return f"changes-{output.pk}-%s"


@reviewer_required
@require_POST
def undo(request: HttpRequest, decision_id: int) -> HttpResponse:
    """Undo from the page of the decided request, or from whatever page the reviewer is on."""
    decision = get_object_or_404(Decision.objects.select_related("output__request"), pk=decision_id)
    if decision.batch and decision.reviewer_id == request.user.pk:
        return _undo_bulk(request, decision)
    image_request = decision.output.request
    try:
        actions.undo_decision(decision_id=decision.pk, reviewer=request.user)
        outcome = {"undone": True}
    except actions.DecisionRefused as refused:
        outcome = {"error": str(refused)}
    elsewhere = request.POST.get("page") != str(image_request.pk)
    if "error" in outcome and (elsewhere or not request.htmx):
        messages.error(request, outcome["error"])
    if request.htmx and elsewhere:
        _, _, query = _queue_filters(request)
        target = _with_query(reverse("review_detail", args=[image_request.pk]), query)
        return HttpResponseClientRedirect(target)
    return _after_decision(request, image_request, **outcome)


def _undo_bulk(request: HttpRequest, decision: Decision) -> HttpResponse:
    """Take back a whole bulk action and stay on (or go back to) the queue."""
    undone, refusals = actions.undo.undo_batch(batch=decision.batch, reviewer=request.user)
    if undone:
        verb = "approve" if decision.verdict == Decision.Verdict.APPROVE else "reject"
        items = ", ".join(f"#{pk}" for pk in undone)
        messages.success(request, f"Undone: your bulk {verb} of {items}.")
    for refusal in refusals:
        messages.error(request, refusal)
    _, _, query = _queue_filters(request)
    target = _with_query(reverse("review_queue"), query)
    return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
