"""Outputs: their files, the reviewers' decisions on them, publishing, and the library's
approved or published outputs for bulk downloads."""

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from pydantic import Field

from imagereview import actions
from imagereview.actions import publishing
from imagereview.api import bodies, idempotency, schemas
from imagereview.api.auth import SCOPES, scoped
from imagereview.api.problems import Problem, from_form_errors, invalid
from imagereview.api.representations import absolute, json_response, publication, request_detail
from imagereview.fileserving import file_response
from imagereview.forms import ChangesForm, DecisionForm, PublishForm
from imagereview.models import Asset, ImageRequest, Publication
from imagereview.queries.library import APPROVED, PUBLISHED, export_outputs
from imagereview.queries.pages import decode_cursor, keyset_page
from imagereview.roles import is_reviewer

router = Router(tags=["outputs"])

PAGE_KEY = ("id",)
ERRORS = schemas.CALLER_PROBLEMS
FILE_RESPONSE = {
    200: {
        "description": "The image file.",
        "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
KEY_HEADER = [
    {
        "name": idempotency.HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": idempotency.MAX_KEY_LENGTH},
        "description": "Retries with the same key and body get the first answer.",
    }
]


def _body_of(schema: type[Schema]) -> dict:
    return {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": schema.model_json_schema()}},
        },
        "parameters": KEY_HEADER,
    }


def _asset_for_user(request: HttpRequest, asset_id: int, kind: str) -> Asset:
    """The asset, if the caller may see its request (their own, or any for a reviewer)."""
    asset = Asset.objects.select_related("request").filter(pk=asset_id, kind=kind).first()
    user = request.auth
    if asset is None or not (asset.request.requester_id == user.pk or is_reviewer(user)):
        raise Problem(404, "not-found", f"No {kind} {asset_id}.")
    return asset


def _serve(asset: Asset, *, thumbnail: bool) -> HttpResponse:
    stored = asset.thumbnail if thumbnail else asset.file
    if not stored:
        raise Problem(404, "not-found", f"Asset {asset.pk} has no such file.")
    return file_response(
        stored.storage,
        stored.name,
        content_type="image/jpeg" if thumbnail else asset.content_type,
        accel_location=settings.MEDIA_ACCEL_REDIRECT,
    )


def _file_route(kind: str, *, thumbnail: bool):
    suffix = "thumbnail" if thumbnail else "file"

    @router.get(
        f"/{kind}s/{{int:asset_id}}/{suffix}",
        response={404: schemas.Problem, **ERRORS},
        auth=scoped(SCOPES.READ),
        url_name=f"{kind}_{suffix}",
        openapi_extra={"responses": FILE_RESPONSE},
        summary=f"Download the {kind}'s {'thumbnail' if thumbnail else 'image file'}",
    )
    def serve(request: HttpRequest, asset_id: int) -> HttpResponse:
        return _serve(_asset_for_user(request, asset_id, kind), thumbnail=thumbnail)

    serve.__name__ = f"{kind}_{suffix}"
    return serve


output_file = _file_route("output", thumbnail=False)
output_thumbnail = _file_route("output", thumbnail=True)
reference_file = _file_route("reference", thumbnail=False)
reference_thumbnail = _file_route("reference", thumbnail=True)


def _output_for_reviewer(request: HttpRequest, output_id: int) -> Asset:
    if not is_reviewer(request.auth):
        raise Problem(403, "forbidden", "Only reviewers can do this.")
    output = (
        Asset.objects.select_related("request__requester")
        .filter(pk=output_id, kind=Asset.Kind.OUTPUT)
        .first()
    )
    if output is None:
        raise Problem(404, "not-found", f"No output {output_id}.")
    return output


def _refused(image_request: ImageRequest, refused: actions.DecisionRefused) -> Problem:
    """A refused decision: a conflict with the request's state, else not this reviewer's."""
    image_request.refresh_from_db(fields=["status"])
    in_review = image_request.status == ImageRequest.Status.IN_REVIEW
    if isinstance(refused, actions.DecisionConflict) or not in_review:
        return Problem(409, "conflict", str(refused))
    return Problem(403, "forbidden", str(refused))


REVIEW_ERRORS = {404: schemas.Problem, 409: schemas.Problem, 422: schemas.Problem, **ERRORS}


@router.post(
    "/outputs/{int:output_id}/decision",
    response={200: schemas.RequestDetail, **REVIEW_ERRORS},
    auth=scoped(SCOPES.REVIEW),
    openapi_extra=_body_of(schemas.DecisionIn),
    url_name="output_decision",
)
def decide(request: HttpRequest, output_id: int) -> HttpResponse:
    """Approve or reject an output (a reject needs a reason). Reviewers only; nobody decides
    on their own request."""
    output = _output_for_reviewer(request, output_id)
    body = bodies.read(request, scalars=DecisionForm.base_fields)

    def produce() -> HttpResponse:
        form = DecisionForm(body.values)
        if not form.is_valid():
            raise from_form_errors(form.errors)
        try:
            actions.decide(output=output, reviewer=request.auth, **form.cleaned_data)
        except actions.DecisionRefused as refused:
            raise _refused(output.request, refused) from refused
        output.request.refresh_from_db()
        detail = schemas.RequestDetail.model_validate(request_detail(request, output.request))
        return json_response(detail)

    return idempotency.once(request, body, produce)


@router.post(
    "/outputs/{int:output_id}/changes",
    response={201: schemas.RequestDetail, **REVIEW_ERRORS},
    auth=scoped(SCOPES.REVIEW),
    openapi_extra=_body_of(schemas.ChangesIn),
    url_name="output_changes",
)
def request_changes(request: HttpRequest, output_id: int) -> HttpResponse:
    """Request changes: close this version and submit its revision (returned) at once."""
    output = _output_for_reviewer(request, output_id)
    body = bodies.read(request, scalars=ChangesForm.base_fields)

    def produce() -> HttpResponse:
        data = {**ChangesForm.initial_for(output.request), **body.values}
        form = ChangesForm(data, output=output)
        if not form.is_valid():
            raise from_form_errors(form.errors)
        try:
            revision = actions.request_changes(
                output=output, reviewer=request.auth, **form.request_fields()
            )
        except actions.DecisionRefused as refused:
            raise _refused(output.request, refused) from refused
        detail = schemas.RequestDetail.model_validate(request_detail(request, revision))
        return json_response(detail, status=201)

    return idempotency.once(request, body, produce)


@router.post(
    "/outputs/{int:output_id}/publish",
    response={202: schemas.Publishing, **REVIEW_ERRORS},
    auth=scoped(SCOPES.PUBLISH),
    openapi_extra=_body_of(schemas.PublishIn),
    url_name="output_publish",
)
def publish(request: HttpRequest, output_id: int) -> HttpResponse:
    """Publish an approved output (to the default target unless `target` names another);
    the cluster copies it. Publishing again answers the publication there is."""
    output = _output_for_reviewer(request, output_id)
    body = bodies.read(request, scalars=PublishForm.base_fields)

    def produce() -> HttpResponse:
        form = PublishForm(body.values)
        if not form.is_valid():
            raise from_form_errors(form.errors)
        try:
            published = publishing.publish(
                output=output, actor=request.auth, target=form.cleaned_data["target"]
            )
        except publishing.PublishRefused as refused:
            raise Problem(409, "conflict", str(refused)) from refused
        answer = {"publication": publication(request, published.pk, published.state)}
        return json_response(schemas.Publishing.model_validate(answer), status=202)

    return idempotency.once(request, body, produce)


class OutputFilters(Schema):
    approved: bool = Field(True, description="Always true: only approved outputs are listed.")
    published: bool = Field(False, description="Only outputs published now.")
    # Ids are 64-bit: a larger number names nothing and could not even be asked for.
    request: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Only the outputs of this request."
    )
    cursor: str = ""
    limit: int = Field(100, ge=1, le=500)


@router.get(
    "/outputs",
    response={200: schemas.OutputPage, 422: schemas.Problem, **ERRORS},
    auth=scoped(SCOPES.READ),
    url_name="outputs",
)
def list_outputs(request: HttpRequest, filters: Query[OutputFilters]) -> dict:
    """The approved (or published) outputs of the requests the caller may see, newest first,
    a keyset page at a time: what a bulk download takes."""
    if not filters.approved:
        raise invalid({"approved": ["Only approved outputs are listed here."]})
    if filters.cursor and decode_cursor(filters.cursor, Asset, PAGE_KEY) is None:
        raise invalid({"cursor": ["Not a cursor this list gave out: start without one."]})
    outputs = export_outputs(
        viewer=request.auth,
        request_ids=None if filters.request is None else [filters.request],
        include=PUBLISHED if filters.published else APPROVED,
    )
    live = Publication.objects.filter(output=OuterRef("pk"), state=Publication.State.PUBLISHED)
    page = keyset_page(
        outputs.select_related("generation").annotate(published=Exists(live)),
        newest_first=True,
        cursor=filters.cursor,
        size=filters.limit,
        key=PAGE_KEY,
    )
    return {
        "items": [
            {
                "id": output.pk,
                "request_id": output.request_id,
                "variant": output.generation.variant if output.generation else output.index + 1,
                "sha256": output.sha256,
                "width": output.width,
                "height": output.height,
                "download_url": absolute(request, "api-v1:output_file", output.pk),
                "published": output.published,
            }
            for output in page.rows
        ],
        "next_cursor": page.next_cursor or None,
    }
