"""Admins: the alerts drift monitoring raised, and acknowledging them."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from imagereview.actions import alerts
from imagereview.models import Alert

A = Alert.State
RESOLVED_SHOWN = 50
RESOLVED_DAYS = 7


@staff_member_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    unresolved = Alert.objects.exclude(state=A.RESOLVED).select_related("acknowledged_by")
    since = timezone.now() - timedelta(days=RESOLVED_DAYS)
    resolved = Alert.objects.filter(state=A.RESOLVED, resolved_at__gte=since).order_by(
        "-resolved_at", "-id"
    )
    context = {
        "open_alerts": [alert for alert in unresolved if alert.state == A.OPEN],
        "acknowledged_alerts": [alert for alert in unresolved if alert.state == A.ACKNOWLEDGED],
        "resolved_alerts": resolved[:RESOLVED_SHOWN],
        "resolved_days": RESOLVED_DAYS,
    }
    return render(request, "alerts/list.html", context)


@staff_member_required
@require_POST
def acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    was_open = alert.state == A.OPEN
    alert = alerts.acknowledge_alert(alert_id=alert.pk, actor=request.user)
    if request.htmx:
        return render(request, "alerts/list.html#alert", {"alert": alert})
    if was_open:
        messages.success(request, f"Acknowledged: {alert.title}")
    else:
        messages.info(request, f"Already {alert.get_state_display().lower()}: {alert.title}")
    return redirect("alerts")
