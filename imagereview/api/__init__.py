"""The JSON API, version 1: django-ninja, its OpenAPI schema and offline docs under /api/v1/.

`urls` wraps ninja's URL patterns in one gate that keeps HTML off the wire: a declared body
over the cap is refused before it is read, a wrong method is answered as a problem, and an
unknown path under the API is a 404 problem, not the site's page.
"""

from collections.abc import Callable
from functools import wraps

from csp.decorators import csp_update
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Swagger
from ninja.operation import Operation

from imagereview.api import outputs, problems, requests
from imagereview.api.auth import scoped
from imagereview.api.bodies import MULTIPART

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class OfflineSwagger(Swagger):
    """Swagger UI from static files, under the site's policy and no wider than it needs."""

    # Its stylesheet draws the expand and copy icons as data: SVG images.
    @csp_update({"img-src": ["data:"]})
    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: object) -> HttpResponse:
        return super().render_page(request, api, **kwargs)


class ImageReviewAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        """The view's own name ("create_request"): unique here, and short in clients."""
        return operation.view_func.__name__

    def get_openapi_schema(self, *args: object, **kwargs: object) -> dict:
        """The schema, with problem answers published as `application/problem+json`."""
        schema = super().get_openapi_schema(*args, **kwargs)
        for operations in schema["paths"].values():
            for operation in operations.values():
                for answer in operation["responses"].values():
                    content = answer.get("content", {})
                    if content.get("application/json", {}).get("schema") == PROBLEM_REF:
                        answer["content"] = {problems.CONTENT_TYPE: content["application/json"]}
        return schema


api = ImageReviewAPI(
    title="imagereview API",
    version="1",
    urls_namespace="api-v1",
    # Safe by default: an operation that names no scope still needs a caller. It also
    # tells the docs page to send the session's CSRF token with "Try it out".
    auth=scoped(None),
    # Swagger UI would otherwise ask an outside validator about the schema.
    docs=OfflineSwagger(settings={"validatorUrl": None}),
    description=(
        "Ask for images, follow them through review, decide and publish, download the "
        "results. Authenticate with a personal API token (`Authorization: Bearer ir_…`, "
        "made on the API tokens page) or the app's session. Every error is an RFC 9457 "
        "problem document (`application/problem+json`)."
    ),
)
problems.register_handlers(api)
api.add_router("", requests.router)
api.add_router("", outputs.router)


def _body_cap(request: HttpRequest) -> int:
    if request.content_type == MULTIPART:
        return settings.API_MAX_UPLOAD_BYTES
    return settings.API_MAX_BODY_BYTES


def _gate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def gated(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            declared = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            declared = 0
        cap = _body_cap(request)
        if declared > cap:
            return problems.Problem(
                413,
                "too-large",
                f"The body is {declared:,} bytes, over the limit of {cap:,} bytes "
                f"for {request.content_type or 'this kind of body'}.",
            ).response()
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").endswith("json"):
            allowed = response.get("Allow", "")
            return problems.Problem(
                405,
                "method-not-allowed",
                f"{request.method} is not allowed here; use {allowed}.",
                headers={"Allow": allowed},
            ).response()
        return response

    return gated


@csrf_exempt  # an answer to every method, not a form: a CSRF refusal would be HTML
def _not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return problems.Problem(
        404, "not-found", f"No API endpoint at {request.path}; see the docs at /api/v1/docs."
    ).response()


def _urls() -> tuple[list, str, str]:
    patterns, app_name, namespace = api.urls
    gated = [
        # ninja's root raises Http404 outside its handlers (an HTML page); it is kept by
        # name, as ninja reverses it to find its own prefix.
        URLPattern(
            p.pattern,
            _not_found if p.name == "api-root" else _gate(p.callback),
            p.default_args,
            p.name,
        )
        for p in patterns
    ]
    gated.append(re_path(r"^(?P<rest>.*)$", _not_found, name="not-found"))
    return gated, app_name, namespace


urls = _urls()
