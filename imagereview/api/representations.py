"""The JSON the API answers with, built from the read layer the pages use."""

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Schema

from imagereview.models import Asset, Decision, ImageRequest
from imagereview.queries import outcomes
from imagereview.queries.library import PUBLICATION_RANK
from imagereview.queries.outcomes import PublicationOutcome, request_outcome

# An output's verdict as the API says it: settled ones only.
VERDICTS = {
    outcomes.APPROVED: "approved",
    outcomes.REJECTED: "rejected",
    outcomes.CHANGES: "changes",
}


def json_response(data: Schema, status: int = 200) -> HttpResponse:
    """A response already in the published shape, as the idempotency record keeps it."""
    return HttpResponse(data.model_dump_json(), status=status, content_type="application/json")


def absolute(request: HttpRequest, name: str, *args: object) -> str:
    return request.build_absolute_uri(reverse(name, args=args))


def request_summary(request: HttpRequest, image_request: ImageRequest) -> dict:
    return {
        "id": image_request.pk,
        "mode": image_request.mode,
        "status": image_request.status,
        "prompt": image_request.prompt,
        "resolution": image_request.resolution,
        "aspect_ratio": image_request.aspect_ratio,
        "variants": image_request.variants,
        "revision": image_request.revision,
        "parent_id": image_request.parent_id,
        "requester": image_request.requester.get_username(),
        "due_at": image_request.due_at,
        "priority": ImageRequest.Priority(image_request.priority).name.lower(),
        "created_at": image_request.created_at,
        "updated_at": image_request.updated_at,
        "url": request.build_absolute_uri(image_request.get_absolute_url()),
    }


def request_detail(request: HttpRequest, image_request: ImageRequest) -> dict:
    """Everything about a request the caller may see, in the words of the request's page."""
    viewer = request.auth
    outcome = request_outcome(image_request, viewer=viewer)
    generations, outputs = [], []
    for variant in outcome.variants:
        generation = variant.generation
        generations.append(
            {
                "id": generation.pk,
                "variant": generation.variant,
                "state": generation.state,
                "provider_task_id": generation.provider_task_id,
                "failure_code": generation.failure_code,
                "failure_message": generation.failure_message,
                "credits": generation.credits,
                "attempts": generation.attempts,
            }
        )
        for output_outcome in variant.outputs:
            output = output_outcome.output
            outputs.append(
                {
                    **_files(request, output, "output"),
                    "generation_id": generation.pk,
                    "variant": generation.variant,
                    "bytes": output.bytes,
                    "sha256": output.sha256,
                    "content_type": output.content_type,
                    "checks": output.checks,
                    "flags": [check["name"] for check in output.checks if not check["passed"]],
                    "verdict": VERDICTS.get(output_outcome.verdict, ""),
                    "publication": _publication(request, output_outcome.publications),
                }
            )
    references = image_request.assets.filter(kind=Asset.Kind.REFERENCE).order_by("index")
    return {
        **request_summary(request, image_request),
        "output_format": image_request.output_format,
        "required_approvals": image_request.required_approvals,
        "approval_quota": image_request.approval_quota,
        "workflow": image_request.workflow.name if image_request.workflow_id else None,
        "stage": image_request.stage.name if image_request.stage_id else None,
        "credits": outcome.credits,
        "generations": generations,
        "outputs": outputs,
        "references": [_files(request, reference, "reference") for reference in references],
        "decisions": _decisions(image_request, outcomes.shows_reviewer_names(viewer)),
        "revisions": [
            {"id": version.pk, "revision": version.revision, "status": version.status}
            for version in _family(image_request)
        ],
        "is_final": image_request.is_final,
    }


def _files(request: HttpRequest, asset: Asset, kind: str) -> dict:
    return {
        "id": asset.pk,
        "width": asset.width,
        "height": asset.height,
        "download_url": absolute(request, f"api-v1:{kind}_file", asset.pk),
        "thumbnail_url": absolute(request, f"api-v1:{kind}_thumbnail", asset.pk),
    }


def _publication(request: HttpRequest, publications: list[PublicationOutcome]) -> dict | None:
    """The most telling publication of an output (published before pending, and so on)."""
    if not publications:
        return None
    shown = min(publications, key=lambda p: PUBLICATION_RANK.index(p.state))
    return publication(request, shown.pk, shown.state)


def publication(request: HttpRequest, pk: int, state: str) -> dict:
    return {"id": pk, "state": state, "url": absolute(request, "published_file", pk)}


def _decisions(image_request: ImageRequest, show_names: bool) -> list[dict]:
    """Every decision on the request's outputs, undone ones too, oldest first."""
    decisions = (
        Decision.objects.filter(output__request=image_request)
        .select_related("reviewer", "stage")
        .order_by("created_at", "id")
    )
    return [
        {
            "id": decision.pk,
            "output_id": decision.output_id,
            "verdict": decision.verdict,
            "reason": decision.reason,
            "comment": decision.comment,
            "decided_by": _decided_by(decision),
            "reviewer": decision.reviewer.get_username()
            if decision.reviewer and show_names
            else None,
            "guest_name": decision.guest_name if decision.guest_link_id and show_names else None,
            "stage": decision.stage.name if decision.stage else None,
            "created_at": decision.created_at,
            "undone": decision.undone_at is not None,
        }
        for decision in decisions
    ]


def _decided_by(decision: Decision) -> str:
    if decision.guest_link_id is not None:
        return "guest"
    return "reviewer" if decision.reviewer_id else "acceptance_rules"


def _family(image_request: ImageRequest) -> Iterable[ImageRequest]:
    """Every version of the request: up its parents to the first, then down every revision."""
    fields = ("pk", "parent_id", "revision", "status", "created_at")
    first = image_request
    while first.parent_id:
        first = ImageRequest.objects.only(*fields).get(pk=first.parent_id)
    family, frontier = [first], [first.pk]
    while frontier:
        children = list(ImageRequest.objects.only(*fields).filter(parent_id__in=frontier))
        family += children
        frontier = [child.pk for child in children]
    return sorted(family, key=lambda version: (version.revision, version.created_at, version.pk))
