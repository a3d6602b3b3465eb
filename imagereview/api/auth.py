"""Who is calling and what they may do: a personal token with scopes, or the browser session.

A token opens only the operations of its scopes; the session of the app's own pages opens
every operation its user may do there, with Django's CSRF check on unsafe methods. Either
way, each caller's calls are counted against the rate limit.
"""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from imagereview.actions.tokens import TokenRefused, verify_token
from imagereview.api import ratelimit
from imagereview.api.problems import Problem
from imagereview.models import ApiToken

SCOPES = ApiToken.Scope


class PersonalToken(HttpBearer):
    """`Authorization: Bearer ir_<prefix>_<secret>`, holding `scope` (None: any scope)."""

    def __init__(self, scope: str | None) -> None:
        self.scope = scope
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser:
        try:
            api_token = verify_token(token.strip())
        except TokenRefused as refused:
            # A token was sent: say what is wrong with it rather than try the session.
            raise AuthenticationError(message=str(refused)) from refused
        if self.scope and self.scope not in api_token.scopes:
            raise Problem(
                403,
                "forbidden",
                f"This token lacks the '{self.scope}' scope; create one with it on the "
                "API tokens page.",
            )
        ratelimit.admit(f"token:{api_token.pk}")
        request.api_token = api_token
        return api_token.user


class Session(APIKeyCookie):
    """The signed-in user of the app's pages; unsafe methods need the CSRF token."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        key = request.COOKIES.get(self.param_name)
        if key and check_csrf(request):
            raise Problem(403, "forbidden", "CSRF check failed: send the X-CSRFToken header.")
        return key

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        if not (key and request.user.is_authenticated):
            return None
        ratelimit.admit(f"user:{request.user.pk}")
        request.api_token = None
        return request.user


def scoped(scope: str | None) -> list:
    """The authentication of an operation that needs `scope` (None: any)."""
    return [PersonalToken(scope), Session()]
