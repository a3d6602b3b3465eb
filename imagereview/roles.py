"""Who may do what: requesters ask, reviewers decide, admins do both and run the place."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

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


def context(request: HttpRequest) -> dict[str, bool]:
    """Template context: what the signed-in user may see in the navigation."""
    return {"is_reviewer": is_reviewer(request.user)}
