"""The library: every request a person may see and what became of each output, whatever its
state; and the outputs an export takes.

Requesters see their own requests, reviewers and admins everyone's. Pages are keyset pages
newest first by id: the primary key orders every page, filtered or not, without a sort, as
the single-column indexes on status and requester hold the id too (`created_at` has no index
of its own to page all requests by).
"""

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connections
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from imagereview.models import Asset, Decision, ImageRequest, Publication, Stage
from imagereview.queries import outcomes
from imagereview.queries.pages import keyset_page
from imagereview.roles import is_reviewer
from imagereview.verdicts import counting_rows, standings

R = ImageRequest.Status
P = Publication.State
V = Decision.Verdict

PAGE_SIZE = 24
ORDER = ("id",)
PUBLISHED = outcomes.PUBLISHED
# What an export takes: approved outputs, or only those published now.
APPROVED = "approved"
INCLUDES = (APPROVED, PUBLISHED)
# The state an output's publications show, the most telling first.
PUBLICATION_RANK = (P.PUBLISHED, P.PENDING, P.FAILED, P.RETRACTED)


@dataclass(frozen=True)
class LibraryOutput:
    """One output on a library page: its thumbnail, verdict and publication, in words."""

    output: Asset
    variant: int
    verdict: str
    verdict_words: str
    approvals: int
    publication: str
    publication_words: str


@dataclass
class LibraryRow:
    image_request: ImageRequest
    outputs: list[LibraryOutput] = field(default_factory=list)

    @property
    def approved_outputs(self) -> int:
        return sum(1 for output in self.outputs if output.verdict == outcomes.APPROVED)


@dataclass(frozen=True)
class LibraryPage:
    rows: list[LibraryRow]
    next_cursor: str


WORD = re.compile(r"[^\W_]+")


def visible_requests(viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[ImageRequest]:
    """The requests `viewer` may see: their own, or every one for reviewers and admins."""
    if not viewer.is_authenticated:
        return ImageRequest.objects.none()
    if is_reviewer(viewer):
        return ImageRequest.objects.all()
    return ImageRequest.objects.filter(requester=viewer)


def _live_publication() -> Exists:
    return Exists(Publication.objects.filter(request=OuterRef("pk"), state=P.PUBLISHED))


def library_requests(
    *, viewer: AbstractBaseUser | AnonymousUser, filters: Mapping[str, Any]
) -> QuerySet[ImageRequest]:
    """The requests `viewer` may see that match `filters`, in no particular order.

    Filters (each optional): `state` (a request status, or "published": has a live
    publication), `mode`, `requester` (a username), `created_from` and `created_to` (dates,
    both inclusive, in the current time zone), `published` ("yes" or "no") and `q` (words
    to find in the prompt).
    """
    queryset = visible_requests(viewer)
    state = filters.get("state")
    if state == PUBLISHED:
        queryset = queryset.filter(_live_publication())
    elif state:
        queryset = queryset.filter(status=state)
    if filters.get("mode"):
        queryset = queryset.filter(mode=filters["mode"])
    if filters.get("requester"):
        queryset = queryset.filter(requester__username=filters["requester"])
    if filters.get("created_from"):
        queryset = queryset.filter(created_at__gte=_start_of(filters["created_from"]))
    if filters.get("created_to"):
        next_day = filters["created_to"] + dt.timedelta(days=1)
        queryset = queryset.filter(created_at__lt=_start_of(next_day))
    if filters.get("published") == "yes":
        queryset = queryset.filter(_live_publication())
    elif filters.get("published") == "no":
        queryset = queryset.exclude(_live_publication())
    if filters.get("q"):
        queryset = search_prompts(queryset, filters["q"])
    return queryset


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def search_prompts(queryset: QuerySet[ImageRequest], text: str) -> QuerySet[ImageRequest]:
    """Requests whose prompt holds every word of `text`: full-text search on PostgreSQL, each
    word in any of its forms and as a prefix ("light" finds the lighthouse, as one types);
    each word as a substring elsewhere."""
    words = WORD.findall(text)
    if connections[queryset.db].vendor == "postgresql" and words:
        query = " & ".join(f"{word}:*" for word in words)
        # The same expression as the GIN index of migration 0007, so that the index answers.
        return queryset.alias(search=SearchVector("prompt", config="english")).filter(
            search=SearchQuery(query, config="english", search_type="raw")
        )
    for word in words or [text]:
        queryset = queryset.filter(prompt__icontains=word)
    return queryset


def library_page(
    *,
    viewer: AbstractBaseUser | AnonymousUser,
    filters: Mapping[str, Any],
    cursor: str = "",
    size: int = PAGE_SIZE,
) -> LibraryPage:
    """One page of the library, newest first, each request with its outputs' verdicts and
    publications. The same number of queries for a page of 1 request or of `size`."""
    requests = library_requests(viewer=viewer, filters=filters).select_related("requester", "stage")
    page = keyset_page(requests, newest_first=True, cursor=cursor, size=size, key=ORDER)
    outcomes.mark_live_publications(page.rows)
    rows = {image_request.pk: LibraryRow(image_request) for image_request in page.rows}
    outputs = list(
        Asset.objects.filter(request_id__in=rows, kind=Asset.Kind.OUTPUT)
        .select_related("generation")
        .only("pk", "request_id", "thumbnail", "index", "generation__variant")
        .order_by("request_id", "generation__variant", "generation_id", "index")
    )
    output_ids = [output.pk for output in outputs]
    # In a workflow, the verdicts of the stage the request is in count: one query per stage.
    by_stage: dict[int | None, list[int]] = {}
    for output in outputs:
        stage_id = rows[output.request_id].image_request.stage_id
        by_stage.setdefault(stage_id, []).append(output.pk)
    tallies = {}
    for stage_id, ids in by_stage.items():
        tallies |= standings(counting_rows(output_id__in=ids, stage_id=stage_id))
    publications = _publication_states(output_ids)
    for output in outputs:
        row = rows[output.request_id]
        verdict = outcomes.output_verdict(row.image_request, tallies.get(output.pk))
        publication = publications.get(output.pk, "")
        row.outputs.append(
            LibraryOutput(
                output=output,
                variant=output.generation.variant if output.generation else output.index + 1,
                verdict=verdict,
                verdict_words=outcomes.VERDICT_WORDS[verdict],
                approvals=len(tallies[output.pk].approvals) if output.pk in tallies else 0,
                publication=publication,
                publication_words=P(publication).label if publication else "",
            )
        )
    return LibraryPage(list(rows.values()), page.next_cursor)


def _publication_states(output_ids: Collection[int]) -> dict[int, str]:
    """The most telling publication state of each output that has a publication."""
    states: dict[int, str] = {}
    for output_id, state in (
        Publication.objects.filter(output_id__in=output_ids)
        .order_by()
        .values_list("output_id", "state")
    ):
        known = states.get(output_id)
        if known is None or PUBLICATION_RANK.index(state) < PUBLICATION_RANK.index(known):
            states[output_id] = state
    return states


def export_outputs(
    *,
    viewer: AbstractBaseUser | AnonymousUser,
    filters: Mapping[str, Any] | None = None,
    request_ids: Collection[int] | None = None,
    include: str = APPROVED,
) -> QuerySet[Asset]:
    """The outputs an export takes: of the requests `viewer` may see that match `filters`
    (and are among `request_ids`, when given), those approved, or with `include="published"`
    those published now. An output is approved as for publishing: by enough distinct
    reviewers, and rejected by none."""
    requests = library_requests(viewer=viewer, filters=filters or {})
    if request_ids is not None:
        requests = requests.filter(pk__in=list(request_ids))
    outputs = Asset.objects.filter(kind=Asset.Kind.OUTPUT, request_id__in=requests.values("pk"))
    if include == PUBLISHED:
        live = Publication.objects.filter(output=OuterRef("pk"), state=P.PUBLISHED)
        return outputs.filter(Exists(live))
    return approved(outputs)


def approved(outputs: QuerySet[Asset]) -> QuerySet[Asset]:
    """The approved ones of `outputs`, decided in the database as `verdicts.standings` decides
    in Python: each reviewer's (or guest's) latest decision that is not undone counts, and
    the guests of one link count as one approver."""
    same_decider = Q(reviewer=OuterRef("reviewer"), guest_link__isnull=True) | Q(
        guest_link=OuterRef("guest_link"), guest_name__iexact=OuterRef("guest_name")
    )
    superseded = Decision.objects.filter(
        same_decider, output=OuterRef("output"), undone_at__isnull=True
    ).filter(
        Q(created_at__gt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), id__gt=OuterRef("id"))
    )
    # In a workflow, the verdicts of the stage the request is in (its last, once approved).
    counting = (
        Decision.objects.filter(output=OuterRef("pk"), undone_at__isnull=True)
        .filter(Q(stage__isnull=True) | Q(stage=OuterRef("request__stage")))
        .exclude(Exists(superseded))
    )
    later_stage = Stage.objects.filter(
        workflow=OuterRef("request__workflow"), position__gt=OuterRef("request__stage__position")
    )
    approvals = (
        counting.filter(verdict=V.APPROVE)
        .order_by()
        .values("output")
        .annotate(n=Count("reviewer", distinct=True) + Count("guest_link", distinct=True))
        .values("n")
    )
    return (
        outputs.exclude(Exists(counting.filter(verdict=V.REJECT)))
        .exclude(Exists(later_stage))
        .alias(approvals=Coalesce(Subquery(approvals, output_field=IntegerField()), 0))
        .filter(
            Q(request__stage__isnull=True, approvals__gte=F("request__required_approvals"))
            | Q(approvals__gte=F("request__stage__required_approvals"))
        )
    )
