"""Who may do what: requesters ask, reviewers decide, admins do both and run the place."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from imagereview.models import ProviderAccount
from imagereview.queries.notifications import delivered_to

REQUESTERS = "requesters"
REVIEWERS = "reviewers"


def is_reviewer(user: AbstractBaseUser | AnonymousUser) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name=REVIEWERS).exists()


def reviewer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_reviewer(request.user):
            raise PermissionDenied("Only reviewers can do this.")
        return view(request, *args, **kwargs)

    return wrapper


def may_watch_operations(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff run the operations dashboard; reviewers may watch it, without its actions."""
    return user.is_authenticated and (user.is_staff or is_reviewer(user))


def operations_watcher_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_watch_operations(request.user):
            raise PermissionDenied("Only staff and reviewers can see the operations figures.")
        return view(request, *args, **kwargs)

    return wrapper


def context(request: HttpRequest) -> dict[str, object]:
    """Template context: what the signed-in user may see in the navigation and banners."""
    halt = None
    if request.user.is_authenticated and request.user.is_staff:
        halt = ProviderAccount.objects.filter(circuit_open=True).first()
    unread = 0
    if request.user.is_authenticated:
        # One count on the (recipient, read_at, created_at) index; held ones are not news yet.
        unread = delivered_to(request.user).filter(read_at__isnull=True).count()
    return {
        "is_reviewer": is_reviewer(request.user),
        "provider_halt": halt,
        "unread_notifications": unread,
    }
