"""Every signed-in user: their notifications, and what they want to be told."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from imagereview.actions import notifications
from imagereview.forms import NotificationPreferenceForm
from imagereview.queries.notifications import delivered_to
from imagereview.roles import is_reviewer

SHOWN = 100


def _list_context(request: HttpRequest) -> dict[str, object]:
    listed = delivered_to(request.user).order_by("-created_at", "-id")
    return {"notifications": list(listed[:SHOWN]), "shown": SHOWN}


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    template = "notifications/list.html#list" if request.htmx else "notifications/list.html"
    return render(request, template, _list_context(request))


@login_required
@require_POST
def mark_all_read(request: HttpRequest) -> HttpResponse:
    notifications.mark_read(recipient=request.user)
    if request.htmx:
        response = render(request, "notifications/list.html#list", _list_context(request))
        response["HX-Trigger"] = "notificationsRead"
        return response
    return redirect("notifications")


@login_required
@require_GET
def open_notification(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Mark the notification read and go to the page it is about."""
    notification = get_object_or_404(delivered_to(request.user), pk=notification_id)
    notifications.mark_read(recipient=request.user, notification_id=notification.pk)
    target = notification.url
    if not target or not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return redirect("notifications")
    return redirect(target)


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    preference = notifications.preferences_for(request.user)
    roles = {"reviewer": is_reviewer(request.user), "staff": request.user.is_staff}
    saved = False
    if request.method == "POST":
        form = NotificationPreferenceForm(request.POST, instance=preference, **roles)
        if form.is_valid():
            form.save()
            if not request.htmx:
                return redirect("notification_settings")
            saved = True
    else:
        form = NotificationPreferenceForm(instance=preference, **roles)
    template = (
        "notifications/settings.html#preferences" if request.htmx else "notifications/settings.html"
    )
    status = 400 if form.errors else 200
    return render(request, template, {"form": form, "saved": saved}, status=status)
