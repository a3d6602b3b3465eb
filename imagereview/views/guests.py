"""Guest links: reviewers share requests and revoke links; guests, with no account, open them.

A guest's pages take the link's token in their URL and nothing else: the session holds only
the name the guest gave for that link, never a user. A request or file the link does not
share answers 404, exactly like one that does not exist.
"""

import math
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from imagereview.actions import annotations, guests
from imagereview.actions.review import DecisionConflict, DecisionRefused
from imagereview.fileserving import file_response
from imagereview.forms import AnnotationForm, DecisionForm, error_text
from imagereview.limits import Limit, reserve
from imagereview.models import Asset, Decision, GuestLink, ImageRequest
from imagereview.queries.annotations import attach_notes
from imagereview.roles import reviewer_required
from imagereview.verdicts import counting_rows, decider, standings
from imagereview.workflows import may_decide_in, stage_rule

WINDOW_SECONDS = 60.0
# The notes' markers and list, shared with the review pages (no resolving for guests).
NOTES_FRAGMENT = "review/_annotations.html#annotations"


class ShareForm(forms.Form):
    requests = forms.TypedMultipleChoiceField(
        coerce=int,
        widget=forms.MultipleHiddenInput,
        error_messages={"required": "Select at least one request to share."},
    )
    label = forms.CharField(
        max_length=100,
        required=False,
        help_text="Who it is for, so you know which to revoke: \u201cAcme brand team\u201d.",
    )
    expires_in_days = forms.IntegerField(label="Expires in (days)", initial=7)
    may_comment = forms.BooleanField(label="May comment", required=False, initial=True)
    may_decide = forms.BooleanField(label="May approve or reject", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["requests"].valid_value = lambda value: str(value).isdigit()
        days = self.fields["expires_in_days"]
        days.validators = [
            MinValueValidator(1),
            MaxValueValidator(settings.GUEST_LINK_MAX_DAYS),
        ]
        days.widget.attrs.update(min=1, max=settings.GUEST_LINK_MAX_DAYS)


class GuestNameForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Your name",
        help_text="Your comments and decisions are recorded under it.",
        error_messages={"required": "Give your name, so the team knows who said what."},
    )


class GuestCommentForm(forms.Form):
    comment = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Write a comment first."},
    )


# Reviewers -------------------------------------------------------------------------------


@reviewer_required
@require_GET
def link_list(request: HttpRequest) -> HttpResponse:
    return render(request, "review/guest_links.html", _list_context())


def _list_context(**extra: Any) -> dict[str, Any]:
    links = GuestLink.objects.select_related("created_by", "revoked_by").prefetch_related(
        Prefetch("requests", queryset=ImageRequest.objects.order_by("id").only("pk"))
    )
    return {"links": links[:200], "share_max_days": settings.GUEST_LINK_MAX_DAYS, **extra}


@reviewer_required
@require_POST
def share(request: HttpRequest) -> HttpResponse:
    """Create a link (from a review page's share panel or the queue's selection).

    The queue's "Share selected" posts only the selection (`prepare`): answer with the form.
    """
    if request.POST.get("prepare"):
        chosen = [pk for pk in request.POST.getlist("requests") if pk.isdigit()]
        if not chosen:
            messages.error(request, "Select at least one item to share first.")
            return redirect("review_queue")
        return render(
            request, "review/guest_links.html", _list_context(share_ids=chosen, prepared=True)
        )
    form = ShareForm(request.POST)
    error = ""
    if form.is_valid():
        data = form.cleaned_data
        chosen = list(ImageRequest.objects.filter(pk__in=data["requests"]).order_by("id"))
        try:
            if len(chosen) != len(set(data["requests"])):
                raise guests.ShareRefused("Some of these requests do not exist.")
            link = guests.share_requests(
                requests=chosen,
                created_by=request.user,
                label=data["label"],
                expires_in=timedelta(days=data["expires_in_days"]),
                may_comment=data["may_comment"],
                may_decide=data["may_decide"],
            )
        except guests.ShareRefused as refused:
            error = str(refused)
        else:
            url = guests.guest_url(link, base=request.build_absolute_uri("/"))
            context = {"created": link, "created_url": url}
            if request.htmx:
                response = render(request, "review/_share.html#share-panel", context)
            else:
                response = render(request, "review/guest_links.html", _list_context(**context))
            # The URL is shown on this answer only: no cache keeps it.
            response["Cache-Control"] = "no-store"
            return response
    else:
        error = error_text(form)
    context = {"share_error": error, "share_form": form, "share_ids": form.data.getlist("requests")}
    if request.htmx:
        return render(request, "review/_share.html#share-panel", context, status=422)
    return render(request, "review/guest_links.html", _list_context(**context), status=422)


@reviewer_required
@require_POST
def revoke(request: HttpRequest, link_id: int) -> HttpResponse:
    link = get_object_or_404(GuestLink, pk=link_id)
    link = guests.revoke(link=link, by=request.user)
    if request.htmx:
        link = GuestLink.objects.select_related("created_by", "revoked_by").get(pk=link.pk)
        return render(request, "review/guest_links.html#link-row", {"link": link})
    messages.success(request, f"Guest link #{link.pk} is revoked: it no longer opens.")
    return redirect("guest_links")


# Guests ----------------------------------------------------------------------------------


def _client_address(request: HttpRequest) -> str:
    # Behind a proxy, the proxy passes the client's address on in REMOTE_ADDR (see settings).
    return request.META.get("REMOTE_ADDR", "")


def _admit(key: str, calls: int) -> float:
    """Count one call under `key`; return 0, or the seconds to wait when the minute is full."""
    slot = reserve(Limit(key=key, calls=calls, window=WINDOW_SECONDS), max_wait=0.0)
    return 0.0 if slot.granted else max(1.0, slot.wait)


def _limited(request: HttpRequest, wait: float) -> HttpResponse:
    retry_after = str(math.ceil(wait))
    response = render(request, "guests/limited.html", {"retry_after": retry_after}, status=429)
    response["Retry-After"] = retry_after
    return response


def _ended(request: HttpRequest, ended: guests.LinkEnded) -> HttpResponse:
    if request.htmx:
        return HttpResponseClientRefresh()
    context = {"kind": ended.kind, "message": ended.message}
    return render(request, "guests/ended.html", context, status=ended.status)


def guest_view(*, files: bool = False) -> Callable:
    """Open the link of the URL's token for a guest view, within the rate limits.

    The client's address is counted before the token is even read (guessing tokens costs
    calls too), the link after; both answer 429 when their minute is full.
    """
    kind = "guest-file" if files else "guest"

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, token: str, *args: Any, **kwargs: Any) -> HttpResponse:
            calls = settings.GUEST_FILE_RATE_LIMIT if files else settings.GUEST_RATE_LIMIT
            wait = _admit(f"{kind}:ip:{_client_address(request)}", calls)
            if wait:
                return _limited(request, wait)
            try:
                link = guests.open_link(token, count=not files)
            except guests.LinkEnded as ended:
                return _ended(request, ended)
            wait = _admit(f"{kind}:link:{link.pk}", calls)
            if wait:
                return _limited(request, wait)
            response = view(request, link, token, *args, **kwargs)
            # The token is in the URL: no other site may learn it, no index may keep it.
            # ("no-referrer" would send the guest's forms with `Origin: null`, which CSRF
            # refuses.)
            response["Referrer-Policy"] = "same-origin"
            response["X-Robots-Tag"] = "noindex, nofollow"
            if not files:
                response["Cache-Control"] = "private, no-store"
            return response

        return wrapper

    return decorate


def _name_key(link: GuestLink) -> str:
    return f"guest-name-{link.pk}"


def _guest_name(request: HttpRequest, link: GuestLink) -> str:
    return request.session.get(_name_key(link), "")


@guest_view()
@require_http_methods(["GET", "POST"])
def guest_home(request: HttpRequest, link: GuestLink, token: str) -> HttpResponse:
    """Ask the guest's name once (kept in the session for this link), then list the shares."""
    name = _guest_name(request, link)
    form = GuestNameForm(request.POST or None)
    if request.method == "POST" and not name:
        if form.is_valid():
            request.session[_name_key(link)] = form.cleaned_data["name"].strip()
            target = request.POST.get("next", "")
            if not target.startswith(reverse("guest_home", args=[token])):
                target = reverse("guest_home", args=[token])
            return redirect(target)
    elif request.method == "POST":
        return redirect("guest_home", token=token)
    context = {
        "link": link,
        "token": token,
        "guest_name": name,
        "form": form,
        "next": request.GET.get("next", ""),
        "shared": guests.shared_requests(link).prefetch_related(
            Prefetch(
                "assets",
                queryset=Asset.objects.filter(kind=Asset.Kind.OUTPUT).only("pk", "request_id"),
                to_attr="outputs",
            )
        ),
    }
    return render(request, "guests/home.html", context, status=400 if form.errors else 200)


def _shared_request(link: GuestLink, request_id: int) -> ImageRequest:
    found = guests.shared_requests(link).filter(pk=request_id).select_related("stage").first()
    if found is None:
        raise Http404("No such request.")
    return found


def _request_context(
    request: HttpRequest, link: GuestLink, token: str, image_request: ImageRequest
) -> dict[str, Any]:
    name = _guest_name(request, link)
    me = decider(None, link.pk, name)
    outputs = list(
        image_request.assets.filter(kind=Asset.Kind.OUTPUT)
        .select_related("generation")
        .prefetch_related(
            Prefetch(
                "decisions",
                queryset=Decision.objects.filter(guest_link=link, guest_name__iexact=name).order_by(
                    "-created_at", "-id"
                ),
                to_attr="my_decisions",
            ),
        )
        .order_by("generation__variant", "generation_id", "index")
    )
    attach_notes(outputs)
    rows = counting_rows(output__request=image_request, stage_id=image_request.stage_id)
    tallies = standings(rows, viewer_id=me)
    in_review = image_request.status == ImageRequest.Status.IN_REVIEW
    decides = in_review and link.may_decide and may_decide_in(image_request.stage, link.created_by)
    up_for_decision = set(stage_rule(image_request).outputs) if decides else set()
    latest = dict(
        Decision.objects.filter(output__request=image_request)
        .order_by("output_id", "id")
        .values_list("output_id", "id")
    )
    for output in outputs:
        standing = tallies.get(output.pk)
        output.verdict = standing.verdict if standing else ""
        output.mine = standing.decided_by_me if standing else ""
        output.seen = latest.get(output.pk, 0)
        output.decidable = output.pk in up_for_decision
    return {
        "link": link,
        "token": token,
        "guest_name": name,
        "image_request": image_request,
        "outputs": outputs,
        "references": list(
            image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index")
        ),
        "reasons": Decision.Reason.choices,
        "may_decide": decides,
    }


@guest_view()
@require_GET
def guest_request(
    request: HttpRequest, link: GuestLink, token: str, request_id: int
) -> HttpResponse:
    image_request = _shared_request(link, request_id)
    if not _guest_name(request, link):
        return redirect(reverse("guest_home", args=[token]) + f"?next={request.path}")
    context = _request_context(request, link, token, image_request)
    return render(request, "guests/request.html", context)


def _guest_output(link: GuestLink, output_id: int) -> Asset:
    output = guests.shared_output(link, output_id)
    if output is None:
        raise Http404("No such image.")
    return output


def _after_guest_action(
    request: HttpRequest, link: GuestLink, token: str, output: Asset, **extra: Any
) -> HttpResponse:
    image_request = ImageRequest.objects.select_related("stage").get(pk=output.request_id)
    if not request.htmx:
        if extra.get("error"):
            messages.error(request, extra["error"])
        return redirect("guest_request", token=token, request_id=image_request.pk)
    context = _request_context(request, link, token, image_request) | extra
    context["error_output_id"] = output.pk
    status = 409 if extra.get("conflict") else 422 if extra.get("error") else 200
    return render(request, "guests/request.html#guest-body", context, status=status)


@guest_view()
@require_POST
def guest_decide(request: HttpRequest, link: GuestLink, token: str, output_id: int) -> HttpResponse:
    output = _guest_output(link, output_id)
    name = _guest_name(request, link)
    form = DecisionForm(request.POST)
    extra: dict[str, Any] = {}
    if not name:
        extra = {"error": "Give your name first."}
    elif form.is_valid():
        try:
            guests.decide_as_guest(link=link, guest_name=name, output=output, **form.cleaned_data)
        except DecisionConflict as conflict:
            extra = {"error": str(conflict), "conflict": True}
        except DecisionRefused as refused:
            extra = {"error": str(refused)}
    else:
        extra = {"error": error_text(form)}
    return _after_guest_action(request, link, token, output, **extra)


@guest_view()
@require_POST
def guest_comment(
    request: HttpRequest, link: GuestLink, token: str, output_id: int
) -> HttpResponse:
    output = _guest_output(link, output_id)
    name = _guest_name(request, link)
    form = GuestCommentForm(request.POST)
    extra: dict[str, Any] = {}
    if not name:
        extra = {"error": "Give your name first."}
    elif form.is_valid():
        try:
            guests.comment_as_guest(
                link=link, guest_name=name, output=output, comment=form.cleaned_data["comment"]
            )
        except DecisionRefused as refused:
            extra = {"error": str(refused)}
    else:
        extra = {"error": error_text(form)}
    return _after_guest_action(request, link, token, output, **extra)


@guest_view()
@require_http_methods(["GET", "POST"])
def guest_notes(request: HttpRequest, link: GuestLink, token: str, output_id: int) -> HttpResponse:
    """An output's notes as a fragment (GET), or a guest's new pin or box (POST), for
    static/js/annotations.js."""
    output = _guest_output(link, output_id)
    error = ""
    if request.method == "POST":
        form = AnnotationForm(request.POST)
        if form.is_valid():
            try:
                annotations.add_annotation(
                    output=output,
                    guest_link=link,
                    guest_name=_guest_name(request, link),
                    **form.cleaned_data,
                )
            except annotations.AnnotationRefused as refused:
                error = str(refused)
        else:
            error = error_text(form)
    attach_notes([output])
    context = {"output": output, "notes": output.notes, "annotation_error": error}
    return render(request, NOTES_FRAGMENT, context, status=422 if error else 200)


@guest_view(files=True)
@require_GET
def guest_file(
    request: HttpRequest, link: GuestLink, token: str, asset_id: int, variant: str
) -> HttpResponse:
    """A stored image of a shared request: its thumbnail, preview (else the file), or file."""
    asset = Asset.objects.filter(pk=asset_id, request__guest_links=link).first()
    if asset is None or variant not in ("thumb", "preview", "file"):
        raise Http404("No such image.")
    stored, content_type = asset.file, asset.content_type
    if variant == "thumb":
        stored, content_type = asset.thumbnail, "image/jpeg"
    elif variant == "preview" and asset.preview:
        stored, content_type = asset.preview, _preview_type(asset.preview.name)
    if not stored:
        raise Http404("No such image.")
    return file_response(
        stored.storage,
        stored.name,
        content_type=content_type,
        accel_location=settings.MEDIA_ACCEL_REDIRECT,
    )


def _preview_type(name: str) -> str:
    return "image/webp" if name.endswith(".webp") else "image/jpeg"
