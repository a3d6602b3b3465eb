"""RFC 9457 problem details: the one shape of every error the API answers.

Every failure, from a wrong field to a crash, reaches the client as
`application/problem+json` with a stable `type` a program can test, a `title`, and a
`detail` a person can act on; validation problems add `errors` per field.
"""

import logging
from collections.abc import Mapping, Sequence

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.html import strip_tags
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError
from ninja.responses import NinjaJSONEncoder

log = logging.getLogger(__name__)

TYPE_BASE = "https://imagereview.invalid/problems/"
CONTENT_TYPE = "application/problem+json"
TITLES = {
    "validation": "Your request has invalid fields",
    "not-authenticated": "Authentication needed",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "conflict": "Conflict with the current state",
    "idempotency-key-reused": "Idempotency key used for a different request",
    "idempotency-in-progress": "A request with this idempotency key is in progress",
    "rate-limited": "Too many requests",
    "too-large": "Request body too large",
    "method-not-allowed": "Method not allowed",
    "server-error": "Internal server error",
}
HOW_TO_AUTHENTICATE = (
    "Send a personal API token as 'Authorization: Bearer ir_…', or sign in to the app."
)
SLUGS_BY_STATUS = {
    400: "validation",
    401: "not-authenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    422: "validation",
    429: "rate-limited",
}


class Problem(Exception):
    """An error answered as a problem document; raise it anywhere below an API operation."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def document(self) -> dict:
        body = {
            "type": TYPE_BASE + self.slug,
            "title": TITLES[self.slug],
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = {field: list(messages) for field, messages in self.errors.items()}
        return body

    def response(self) -> HttpResponse:
        return problem_response(self.document(), headers=self.headers)


def problem_response(document: dict, *, headers: Mapping[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(
        NinjaJSONEncoder().encode(document), status=document["status"], content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def invalid(errors: Mapping[str, Sequence[str]], detail: str = "") -> Problem:
    """A validation problem, from per-field messages (`__all__` for the whole body)."""
    first = next((messages[0] for messages in errors.values() if messages), "")
    return Problem(
        422, "validation", detail or first or "The request has invalid fields.", errors=errors
    )


def from_form_errors(form_errors: Mapping[str, Sequence[str]]) -> Problem:
    """The problem for a Django form's `errors`, field by field, with the form's own words."""
    errors = {
        field: [strip_tags(str(m)) for m in messages] for field, messages in form_errors.items()
    }
    return invalid(errors, "Some fields are invalid: " + ", ".join(errors) + ".")


def _ninja_validation(exc: ValidationError) -> Problem:
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        location = [
            str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")
        ]
        errors.setdefault(".".join(location) or "__all__", []).append(error.get("msg", "invalid"))
    return invalid(errors)


def register_handlers(api: NinjaAPI) -> None:
    """Answer every exception an operation raises with a problem, never an HTML page."""

    @api.exception_handler(Problem)
    def on_problem(request: HttpRequest, exc: Problem) -> HttpResponse:
        return exc.response()

    @api.exception_handler(ValidationError)
    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return _ninja_validation(exc).response()

    @api.exception_handler(AuthenticationError)
    def on_authentication(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        # ninja's own refusal names no reason; a refused token names its own.
        detail = HOW_TO_AUTHENTICATE if exc.message == "Unauthorized" else exc.message
        return Problem(
            401, "not-authenticated", detail, headers={"WWW-Authenticate": "Bearer"}
        ).response()

    @api.exception_handler(AuthorizationError)
    def on_authorization(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
        return Problem(403, "forbidden", exc.message).response()

    @api.exception_handler(HttpError)
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        slug = SLUGS_BY_STATUS.get(exc.status_code, "server-error")
        return Problem(exc.status_code, slug, exc.message).response()

    @api.exception_handler(Http404)
    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return Problem(404, "not-found", str(exc) or "Nothing is here.").response()

    @api.exception_handler(PermissionDenied)
    def on_permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return Problem(403, "forbidden", str(exc) or "You may not do this.").response()

    @api.exception_handler(Exception)
    def on_crash(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("API %s %s failed", request.method, request.path)
        return Problem(
            500, "server-error", "Something went wrong on our side; it is logged. Try again later."
        ).response()
