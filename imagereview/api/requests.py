"""The caller, and their image requests: create, list, read."""

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.http import HttpRequest, HttpResponse
from django.utils.datastructures import MultiValueDict
from ninja import Query, Router, Schema
from pydantic import Field

from imagereview import actions, media
from imagereview.actions import ReferenceUpload
from imagereview.api import bodies, idempotency, schemas
from imagereview.api.auth import SCOPES, scoped
from imagereview.api.problems import Problem, from_form_errors, invalid
from imagereview.api.representations import json_response, request_detail, request_summary
from imagereview.bodylimits import too_large_uploads
from imagereview.forms import EditRequestForm, GenerationRequestForm, LibraryFilterForm
from imagereview.models import MAX_PROMPT_LENGTH, MAX_VARIANTS, Asset, ImageRequest
from imagereview.providers import downloads
from imagereview.queries.library import library_requests
from imagereview.queries.pages import decode_cursor, keyset_page
from imagereview.roles import is_reviewer

router = Router(tags=["requests"])

ERRORS = schemas.CALLER_PROBLEMS
FORM_FIELDS = (
    "prompt",
    "aspect_ratio",
    "resolution",
    "output_format",
    "variants",
    "required_approvals",
    "approval_quota",
    "auto_reject",
    "auto_publish",
    "due_at",
    "priority",
    "workflow",
)
REFERENCE_LISTS = ("reference_urls", "reference_output_ids")
PAGE_KEY = ("id",)


@router.get("/me", response={200: schemas.Me, **ERRORS}, auth=scoped(None), url_name="me")
def me(request: HttpRequest) -> dict:
    """Who the caller is, what their token may do, and the limits their requests meet.

    Any scope reads this: a token of any scope is accepted."""
    user = request.auth
    token = request.api_token
    return {
        "username": user.get_username(),
        "is_reviewer": is_reviewer(user),
        "is_staff": user.is_staff,
        "scopes": token.scopes if token else list(SCOPES.values),
        "limits": {
            "rate_per_minute": settings.API_RATE_LIMIT,
            "max_body_bytes": settings.API_MAX_BODY_BYTES,
            "max_upload_bytes": media.MAX_REFERENCE_BYTES,
            "max_references": media.MAX_REFERENCES,
            "max_variants": MAX_VARIANTS,
            "max_prompt_length": MAX_PROMPT_LENGTH,
        },
    }


CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": schemas.RequestCreate.model_json_schema()},
            bodies.MULTIPART: {
                "schema": {
                    **schemas.RequestCreate.model_json_schema(),
                    "properties": {
                        **schemas.RequestCreate.model_json_schema()["properties"],
                        "references": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                }
            },
        },
    },
    "parameters": [
        {
            "name": idempotency.HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
            "description": "Retries with the same key and body get the first answer.",
        }
    ],
}


@router.post(
    "/requests",
    response={201: schemas.RequestDetail, 409: schemas.Problem, 422: schemas.Problem, **ERRORS},
    auth=scoped(SCOPES.REQUEST),
    openapi_extra=CREATE_BODY,
    url_name="requests",
)
def create_request(request: HttpRequest) -> HttpResponse:
    """Ask for a generation, or an edit of references (files, URLs or earlier outputs).

    The fields and their rules are the web form's; a JSON body, or multipart/form-data with
    the reference files as `references`."""
    body = bodies.read(
        request, scalars=("mode", *FORM_FIELDS), lists=REFERENCE_LISTS, files=("references",)
    )
    return idempotency.once(request, body, lambda: _create(request, body))


def _create(request: HttpRequest, body: bodies.Body) -> HttpResponse:
    user = request.auth
    mode = body.values.get("mode", ImageRequest.Mode.GENERATE)
    if mode not in ImageRequest.Mode.values:
        raise invalid({"mode": ["Choose generate (from a prompt) or edit (of references)."]})
    urls = body.lists.get("reference_urls", [])
    output_ids = body.lists.get("reference_output_ids", [])
    uploads = body.files.get("references", [])
    if mode == ImageRequest.Mode.GENERATE and (urls or output_ids or uploads):
        raise invalid({"mode": ["A generation takes no references: send mode edit to edit them."]})
    form_class = EditRequestForm if mode == ImageRequest.Mode.EDIT else GenerationRequestForm
    data = {**_initial(form_class), **body.values}
    if "auto_publish" in data:
        data["auto_publish"] = bodies.as_choice(data["auto_publish"])
    if mode == ImageRequest.Mode.GENERATE:
        form = form_class(data)
    else:
        sources = _reference_outputs(user, output_ids)
        fetched = _fetch_references(urls)
        files = MultiValueDict({"references": [*uploads, *fetched]})
        form = form_class(data, files, source_outputs=sources, too_large=too_large_uploads(request))
    if not form.is_valid():
        raise from_form_errors(form.errors)
    references: list = []
    if mode == ImageRequest.Mode.EDIT:
        references = list(form.source_outputs) + [
            ReferenceUpload(f.name, f) for f in form.cleaned_data["references"]
        ]
    image_request = actions.create_request(
        requester=user, mode=mode, references=references, **form.request_fields()
    )
    detail = schemas.RequestDetail.model_validate(request_detail(request, image_request))
    return json_response(detail, status=201)


def _initial(form_class: type[GenerationRequestForm]) -> dict:
    """The values the web form starts with: what an omitted field means."""
    form = form_class()
    return {
        name: form.fields[name].initial
        for name in FORM_FIELDS
        if form.fields[name].initial is not None and name != "prompt"
    }


def _reference_outputs(user, output_ids: list) -> list[Asset]:
    """The earlier outputs named as references, each one the caller may use as the edit page
    allows: their own, or any for a reviewer."""
    outputs, errors = [], []
    for output_id in output_ids:
        output = None
        if str(output_id).isdigit():
            output = (
                Asset.objects.select_related("request")
                .filter(pk=int(output_id), kind=Asset.Kind.OUTPUT)
                .first()
            )
        if output is None or not (output.request.requester_id == user.pk or is_reviewer(user)):
            errors.append(f"No output {output_id} that you may use.")
        else:
            outputs.append(output)
    if errors:
        raise invalid({"reference_output_ids": errors})
    return outputs


def _fetch_references(urls: list) -> list[UploadedFile]:
    """Each reference URL fetched through the guard of result downloads, as an upload."""
    fetched, errors = [], []
    for index, url in enumerate(urls):
        # Named by its place in the list: what the form's messages call it.
        name = f"reference_urls[{index}]"
        upload = TemporaryUploadedFile(name, "application/octet-stream", 0, None)
        try:
            downloads.fetch_to(
                str(url),
                upload.file,
                allowed_hosts=settings.API_REFERENCE_URL_HOSTS,
                allow_loopback=settings.USE_SANDBOX,
                max_bytes=media.MAX_REFERENCE_BYTES,
                timeout=settings.API_REFERENCE_URL_TIMEOUT,
            )
        except (downloads.UnsafeURL, downloads.DownloadFailed) as error:
            errors.append(f"{name} ({str(url)[:200]}): cannot fetch it: {error}.")
            upload.close()
            continue
        upload.size = upload.file.tell()
        upload.file.seek(0)
        fetched.append(upload)
    if errors:
        for upload in fetched:
            upload.close()
        raise invalid({"reference_urls": errors})
    return fetched


class RequestFilters(Schema):
    status: str = Field("", description="A request status, or published.")
    mode: str = ""
    mine: bool = Field(False, description="Only the caller's own (reviewers see everyone's).")
    q: str = Field("", description="Words to find in the prompt.")
    cursor: str = ""
    limit: int = Field(24, ge=1, le=100)


@router.get(
    "/requests",
    response={200: schemas.RequestPage, 422: schemas.Problem, **ERRORS},
    auth=scoped(SCOPES.READ),
)
def list_requests(request: HttpRequest, filters: Query[RequestFilters]) -> dict:
    """The requests the caller may see, newest first, a keyset page at a time.

    Pass `next_cursor` back as `cursor` for the next page; requests created meanwhile do not
    shift the pages."""
    form = LibraryFilterForm({"state": filters.status, "mode": filters.mode, "q": filters.q})
    if not form.is_valid():
        errors = dict(form.errors)
        if "state" in errors:
            errors["status"] = errors.pop("state")
        raise from_form_errors(errors)
    if filters.cursor and decode_cursor(filters.cursor, ImageRequest, PAGE_KEY) is None:
        raise invalid({"cursor": ["Not a cursor this list gave out: start without one."]})
    queryset = library_requests(viewer=request.auth, filters=form.cleaned_data)
    if filters.mine:
        queryset = queryset.filter(requester=request.auth)
    page = keyset_page(
        queryset.select_related("requester"),
        newest_first=True,
        cursor=filters.cursor,
        size=filters.limit,
        key=PAGE_KEY,
    )
    return {
        "items": [request_summary(request, row) for row in page.rows],
        "next_cursor": page.next_cursor or None,
    }


def get_request_for_user(request: HttpRequest, request_id: int) -> ImageRequest:
    """The request, if the caller may see it as on its page; else 404, as if it did not exist."""
    image_request = ImageRequest.objects.select_related("requester").filter(pk=request_id).first()
    user = request.auth
    if image_request is None or not (image_request.requester_id == user.pk or is_reviewer(user)):
        raise Problem(404, "not-found", f"No request {request_id}.")
    return image_request


@router.get(
    "/requests/{int:request_id}",
    response={200: schemas.RequestDetail, 404: schemas.Problem, **ERRORS},
    auth=scoped(SCOPES.READ),
    url_name="request",
)
def read_request(request: HttpRequest, request_id: int) -> dict:
    """A request: its state, generations, outputs, decisions, revisions and cost."""
    return request_detail(request, get_request_for_user(request, request_id))
