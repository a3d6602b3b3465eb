"""The provenance manifest: one JSON document per published (or exported) output.

What was asked and of whom, what the provider did and billed, what came back, how it was
checked and who decided. Versioned, with its JSON Schema beside this module; built for many
outputs at once in a constant number of queries, so an export of thousands stays cheap.
"""

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from imagereview.models import Asset, Decision, Generation, ImageRequest, Publication
from imagereview.verdicts import decider, standings

MANIFEST_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SOURCE_TYPES = {
    ImageRequest.Mode.GENERATE: "trainedAlgorithmicMedia",
    ImageRequest.Mode.EDIT: "compositeWithTrainedAlgorithmicMedia",
}


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def manifest_for(output: Asset) -> dict:
    return manifests_for([output])[output.pk]


def manifests_for(outputs: Sequence[Asset]) -> dict[int, dict]:
    """Each output's manifest, keyed by its id, from the database as it stands now."""
    if not outputs:
        return {}
    output_ids = [output.pk for output in outputs]
    outputs = list(
        Asset.objects.filter(pk__in=output_ids).select_related("generation", "request__requester")
    )
    requests = {output.request_id: output.request for output in outputs}
    lines = _lines_of_work(requests)
    every_request = {pk for line in lines.values() for pk in line}
    family = {r.pk: r for r in ImageRequest.objects.filter(pk__in=every_request)} | requests
    generations = _by_request(
        Generation.objects.filter(request_id__in=every_request).order_by("variant", "id")
    )
    references = _by_request(
        Asset.objects.filter(request_id__in=requests, kind=Asset.Kind.REFERENCE).order_by("index")
    )
    decisions: dict[int, list[Decision]] = {}
    for decision in (
        Decision.objects.filter(output_id__in=output_ids)
        .select_related("reviewer")
        .order_by("created_at", "id")
    ):
        decisions.setdefault(decision.output_id, []).append(decision)
    standing = standings(
        (d.output_id, decider(d.reviewer_id, d.guest_link_id, d.guest_name), d.verdict)
        for rows in decisions.values()
        for d in rows
        if d.undone_at is None
    )
    publications = {
        publication.output_id: publication
        for publication in Publication.objects.filter(output_id__in=output_ids).order_by(
            "created_at", "id"
        )
    }
    manifests = {}
    for output in outputs:
        image_request = output.request
        line = [family[pk] for pk in lines[image_request.pk]]
        own = decisions.get(output.pk, [])
        manifests[output.pk] = _manifest(
            output,
            image_request,
            line=line,
            generations=generations.get(image_request.pk, []),
            line_generations=[g for r in line for g in generations.get(r.pk, [])],
            references=references.get(image_request.pk, []),
            decisions=own,
            approvals=len(standing[output.pk].approvals) if output.pk in standing else 0,
            approved=output.pk in standing
            and standing[output.pk].approved(image_request.required_approvals),
            publication=publications.get(output.pk),
        )
    return manifests


def _lines_of_work(requests: dict[int, ImageRequest]) -> dict[int, list[int]]:
    """Each request's versions from the first to itself, parents fetched a level at a time."""
    parent_of = {pk: r.parent_id for pk, r in requests.items()}
    missing = {p for p in parent_of.values() if p and p not in parent_of}
    while missing:
        found = dict(ImageRequest.objects.filter(pk__in=missing).values_list("pk", "parent_id"))
        parent_of |= found
        missing = {p for p in found.values() if p and p not in parent_of}
    lines = {}
    for pk in requests:
        line = [pk]
        while parent_of.get(line[0]):
            line.insert(0, parent_of[line[0]])
        lines[pk] = line
    return lines


def _by_request(rows: Iterable) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(row.request_id, []).append(row)
    return grouped


def _manifest(
    output: Asset,
    image_request: ImageRequest,
    *,
    line: list[ImageRequest],
    generations: list[Generation],
    line_generations: list[Generation],
    references: list[Asset],
    decisions: list[Decision],
    approvals: int,
    approved: bool,
    publication: Publication | None,
) -> dict:
    generation = output.generation
    approved_at = _approved_at(decisions) if approved else None
    published_at = publication.published_at if publication else None
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": {"name": "imagereview", "version": "0.1.0"},
        "ai_generated": True,
        "digital_source_type": SOURCE_TYPES[image_request.mode],
        "model": {"name": settings.KIE_MODEL, "provider": generation.provider},
        "request": {
            "id": image_request.pk,
            "mode": image_request.mode,
            "prompt": image_request.prompt,
            "parameters": {
                "aspect_ratio": image_request.aspect_ratio,
                "resolution": image_request.resolution,
                "output_format": image_request.output_format,
                "variants": image_request.variants,
            },
            "requester": _person(image_request.requester, "requester"),
            "revision": image_request.revision,
            "parent_id": image_request.parent_id,
            "created_at": iso(image_request.created_at),
        },
        "revision_chain": [
            {
                "id": version.pk,
                "revision": version.revision,
                "prompt": version.prompt,
                "status": version.status,
                "created_at": iso(version.created_at),
            }
            for version in line
        ],
        "provider_tasks": [_task(g) for g in generations if g.provider_task_id],
        "references": [
            {
                "index": reference.index,
                "sha256": reference.sha256,
                "bytes": reference.bytes,
                "width": reference.width,
                "height": reference.height,
                "content_type": reference.content_type,
            }
            for reference in references
        ],
        "output": {
            "id": output.pk,
            "variant": generation.variant,
            "index": output.index,
            "task_id": generation.provider_task_id or "",
            "sha256": output.sha256,
            "bytes": output.bytes,
            "width": output.width,
            "height": output.height,
            "format": output.content_type.removeprefix("image/").replace("jpeg", "jpg"),
            "content_type": output.content_type,
            "stored_at": iso(output.created_at),
        },
        "checks": [
            {"name": c["name"], "passed": bool(c["passed"]), "detail": c.get("detail", "")}
            for c in output.checks
        ],
        "decisions": [
            {
                "verdict": decision.verdict,
                "reason": decision.reason,
                "comment": decision.comment,
                "at": iso(decision.created_at),
                "reviewer": _decider(decision),
                "undone_at": iso(decision.undone_at),
            }
            for decision in decisions
        ],
        "approval": {
            "approved": approved,
            "approvals": approvals,
            "required_approvals": image_request.required_approvals,
            "approved_at": iso(approved_at),
        },
        "cost": {
            "request_credits": _credits(generations),
            "line_credits": _credits(line_generations),
            "estimated": any(g.credits_estimated for g in line_generations),
        },
        "timestamps": {
            "requested_at": iso(image_request.created_at),
            "submitted_at": iso(generation.submitted_at),
            "completed_at": iso(generation.completed_at),
            "stored_at": iso(generation.stored_at or output.created_at),
            "approved_at": iso(approved_at),
            "published_at": iso(published_at),
        },
        "publication": publication_block(publication),
    }


def _task(generation: Generation) -> dict:
    kind = "duplicate" if generation.duplicate_of_id else "retry" if generation.retry_of_id else ""
    return {
        "task_id": generation.provider_task_id,
        "variant": generation.variant,
        "state": generation.state,
        "kind": kind or "original",
        "credits": float(generation.credits) if generation.credits is not None else None,
        "credits_estimated": generation.credits_estimated,
        "submitted_at": iso(generation.submitted_at),
        "completed_at": iso(generation.completed_at),
    }


def publication_block(
    publication: Publication | None, *, published_at: datetime | None = None
) -> dict | None:
    """The manifest's account of a publication; `published_at` for one still landing."""
    if publication is None:
        return None
    retracted = None
    if publication.state == Publication.State.RETRACTED:
        retracted = {"at": iso(publication.retracted_at), "reason": publication.retract_reason}
    return {
        "id": publication.pk,
        "target": publication.target,
        "key": publication.key,
        "published_at": iso(published_at or publication.published_at),
        "credentials": publication.credentials,
        "credentials_note": publication.credentials_note,
        "retracted": retracted,
    }


def _approved_at(decisions: list[Decision]) -> datetime | None:
    approvals = [d for d in decisions if d.verdict == Decision.Verdict.APPROVE and not d.undone_at]
    return approvals[-1].created_at if approvals else None


def _decider(decision: Decision) -> dict:
    """Who decided: a reviewer, a guest (by the name given and the link), or the rules."""
    if decision.guest_link_id is not None:
        name = f"{decision.guest_name} (guest link #{decision.guest_link_id})"
        return {"role": "guest", "name": name if settings.MANIFEST_REVIEWER_NAMES else None}
    if decision.reviewer is None:
        return {"role": "acceptance rules", "name": None}
    return _person(decision.reviewer, "reviewer")


def _person(user: AbstractBaseUser, role: str) -> dict:
    if user.is_superuser:
        role = "admin"
    return {"role": role, "name": user.get_username() if settings.MANIFEST_REVIEWER_NAMES else None}


def _credits(generations: Iterable[Generation]) -> float:
    return float(sum((g.credits or Decimal(0) for g in generations), Decimal(0)))


def iso(moment: datetime | None) -> str | None:
    """A moment as the manifest writes it: ISO 8601 in UTC with a Z."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None
