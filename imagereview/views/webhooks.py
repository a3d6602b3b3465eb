"""Admins: webhook endpoints, their secrets, and every delivery and attempt to them."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_http_methods, require_POST

from imagereview.actions import webhooks
from imagereview.forms import WebhookEndpointForm
from imagereview.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

D = WebhookDelivery.State
DELIVERIES_SHOWN = 50


def _endpoints() -> QuerySet[WebhookEndpoint]:
    """Every endpoint with its delivery counts and its latest delivery's time and state."""
    latest = WebhookDelivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at", "-id")
    return WebhookEndpoint.objects.annotate(
        pending=Count("deliveries", filter=Q(deliveries__state=D.PENDING)),
        failed=Count("deliveries", filter=Q(deliveries__state=D.FAILED)),
        delivered=Count("deliveries", filter=Q(deliveries__state=D.DELIVERED)),
        last_delivery_at=Subquery(latest.values("created_at")[:1]),
        last_delivery_state=Subquery(latest.values("state")[:1]),
    ).order_by("id")


def _deliveries(endpoint: WebhookEndpoint, state: str) -> list[WebhookDelivery]:
    """The endpoint's latest deliveries, each with its attempts, newest first."""
    queryset = endpoint.deliveries.select_related("event")
    if state in D.values:
        queryset = queryset.filter(state=state)
    attempts = WebhookAttempt.objects.order_by("-number")
    return list(
        queryset.order_by("-created_at", "-id").prefetch_related(
            Prefetch("attempt_log", queryset=attempts)
        )[:DELIVERIES_SHOWN]
    )


def _delivery_with_attempts(delivery_id: int) -> WebhookDelivery:
    attempts = Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("-number"))
    return (
        WebhookDelivery.objects.select_related("event")
        .prefetch_related(attempts)
        .get(pk=delivery_id)
    )


def _endpoint_page(
    request: HttpRequest,
    endpoint: WebhookEndpoint,
    form: WebhookEndpointForm,
    *,
    fragment: bool = False,
    status: int = 200,
    notice: str = "",
) -> HttpResponse:
    """The endpoint's page, or only its deliveries log when `fragment`."""
    state = request.GET.get("state", "")
    context = {
        "endpoint": endpoint,
        "form": form,
        "state": state,
        "states": D.choices,
        "deliveries": _deliveries(endpoint, state),
        "failed": endpoint.deliveries.filter(state=D.FAILED).count(),
        "notice": notice,
    }
    template = "webhooks/endpoint.html#deliveries" if fragment else "webhooks/endpoint.html"
    return render(request, template, context, status=status)


def _back_to(endpoint_id: int) -> HttpResponse:
    return redirect("webhook_endpoint", endpoint_id=endpoint_id)


@staff_member_required
@require_http_methods(["GET"])
def endpoint_list(request: HttpRequest) -> HttpResponse:
    return render(request, "webhooks/list.html", {"endpoints": _endpoints()})


@staff_member_required
@require_http_methods(["GET", "POST"])
def new_endpoint(request: HttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = webhooks.save_endpoint(endpoint_id=None, actor=request.user, **form.cleaned_data)
        messages.success(request, "Endpoint added. Give its secret to the receiver.")
        return _back_to(endpoint.pk)
    status = 422 if form.errors else 200
    return render(request, "webhooks/new.html", {"form": form}, status=status)


@staff_member_required
@require_http_methods(["GET", "POST"])
def endpoint_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    if request.method == "GET":
        form = WebhookEndpointForm(instance=endpoint)
        return _endpoint_page(request, endpoint, form, fragment=bool(request.htmx))
    form = WebhookEndpointForm(request.POST, instance=endpoint)
    if not form.is_valid():
        endpoint.refresh_from_db()  # validating wrote what was typed onto the instance
        return _endpoint_page(request, endpoint, form, status=422)
    webhooks.save_endpoint(endpoint_id=endpoint.pk, actor=request.user, **form.cleaned_data)
    messages.success(request, "Endpoint saved.")
    return _back_to(endpoint.pk)


@staff_member_required
@require_POST
def rotate_secret(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    endpoint = webhooks.rotate_secret(endpoint_id=endpoint.pk, actor=request.user)
    if request.htmx:
        return render(request, "webhooks/endpoint.html#secret", {"endpoint": endpoint})
    messages.success(request, "New secret made: the receiver needs it before the next event.")
    return _back_to(endpoint.pk)


@staff_member_required
@require_POST
def redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id)
    was_pending = delivery.state == D.PENDING
    delivery = webhooks.redeliver(delivery_id=delivery.pk, actor=request.user)
    if request.htmx:
        context = {"delivery": _delivery_with_attempts(delivery.pk)}
        return render(request, "webhooks/endpoint.html#delivery", context)
    if was_pending:
        messages.info(request, "That delivery is already on its way.")
    else:
        messages.success(request, f"{delivery.event.type} is sent again, with the same id.")
    return _back_to(delivery.endpoint_id)


@staff_member_required
@require_POST
def redeliver_failed(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
    count = webhooks.redeliver_failed(endpoint_id=endpoint.pk, actor=request.user)
    notice = f"{count} failed deliver{pluralize(count, 'y,ies')} sent again."
    if request.htmx:
        form = WebhookEndpointForm(instance=endpoint)
        return _endpoint_page(request, endpoint, form, fragment=True, notice=notice)
    messages.success(request, notice)
    return _back_to(endpoint.pk)
