"""What became of a request and each of its outputs, in the words its requester reads.

Internal state names ("stored", "in_review") never reach a requester: every status, verdict
and publication state here comes with the words to show for it.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Prefetch, Q

from imagereview.models import Asset, Decision, Generation, ImageRequest, Publication
from imagereview.roles import is_reviewer
from imagereview.verdicts import Decider, OutputTally, decider, standings

R = ImageRequest.Status
V = Decision.Verdict
P = Publication.State

STATUS_WORDS = {
    R.GENERATING: "Generating",
    R.IN_REVIEW: "Ready for review",
    R.APPROVED: "Approved",
    R.REJECTED: "Rejected",
    R.CHANGES_REQUESTED: "Changes requested",
    R.FAILED: "Failed",
}
PUBLISHED = "published"

# An output's verdict, as a key (also its badge's CSS class) and the words for it.
AWAITING, APPROVED, REJECTED, CHANGES, CLOSED = (
    "awaiting",
    "approved",
    "rejected",
    "changes",
    "closed",
)
VERDICT_WORDS = {
    AWAITING: "Awaiting review",
    APPROVED: "Approved",
    REJECTED: "Rejected",
    CHANGES: "Changes requested",
    # Review ended (the request was decided, or a revision replaced it) without a verdict
    # on this output: "Awaiting review" would promise a decision that will not come.
    CLOSED: "Review closed",
}
GENERATING, FAILED, DONE = "generating", "failed", "done"


def standing_of(status: str, *, published: bool = False) -> str:
    """A request's status, or "published" for an approved one with a live publication."""
    return PUBLISHED if published and status == R.APPROVED else status


def status_words(status: str, *, published: bool = False) -> str:
    """A request's status as its requester says it."""
    standing = standing_of(status, published=published)
    return "Published" if standing == PUBLISHED else STATUS_WORDS[standing]


def mark_live_publications(requests: Sequence[ImageRequest]) -> Sequence[ImageRequest]:
    """Set `live_publication` on each request: whether any of its outputs is published now.

    One query by the rows' ids, once they are fetched: as an annotation of the query that
    pages them, PostgreSQL hashes every publication there is to answer it for a page of 24.
    """
    # By request only, the state checked here: given both, SQLite walks the state's index,
    # every publication there is.
    live = {
        request_id
        for request_id, state in Publication.objects.filter(
            request_id__in=[image_request.pk for image_request in requests]
        ).values_list("request_id", "state")
        if state == P.PUBLISHED
    }
    for image_request in requests:
        image_request.live_publication = image_request.pk in live
    return requests


@dataclass(frozen=True)
class Note:
    """What a reviewer said about an output: a reject's reason, a comment."""

    verdict: str
    verdict_words: str
    reason: str
    comment: str
    by: str
    at: datetime


@dataclass(frozen=True)
class PublicationOutcome:
    pk: int
    state: str
    state_words: str
    target: str
    published_at: datetime | None
    retract_reason: str
    failure_message: str

    @property
    def downloadable(self) -> bool:
        return self.state == P.PUBLISHED


@dataclass
class OutputOutcome:
    output: Asset
    verdict: str
    verdict_words: str
    approvals: int
    approvals_needed: int
    notes: list[Note] = field(default_factory=list)
    publications: list[PublicationOutcome] = field(default_factory=list)
    # The request a change request on this output started.
    revision: ImageRequest | None = None


@dataclass
class VariantOutcome:
    """One generation (a variant, a retry of one, or a duplicate task) and its outputs."""

    generation: Generation
    label: str
    state: str
    state_words: str
    outputs: list[OutputOutcome] = field(default_factory=list)


@dataclass
class RequestOutcome:
    image_request: ImageRequest
    standing: str
    standing_words: str
    approved_outputs: int
    parent: ImageRequest | None
    revision: ImageRequest | None
    variants: list[VariantOutcome]
    credits: Decimal
    publishing: bool

    @property
    def live(self) -> bool:
        """Whether the page should keep asking for news: outputs or publications on the way."""
        return self.image_request.status == R.GENERATING or self.publishing

    @property
    def requirement(self) -> str:
        """The review requirement and the standing against it."""
        stage = self.image_request.stage
        quota = stage.approval_quota if stage else self.image_request.approval_quota
        needed = stage.required_approvals if stage else self.image_request.required_approvals
        line = f"Stage {stage.position}, {stage.name}: needs " if stage else "Needs "
        line += f"{quota} approved output{'' if quota == 1 else 's'}, "
        line += f"{self.approved_outputs} so far"
        if needed > 1:
            line += f"; each output needs {needed} approvals"
        return line


def shows_reviewer_names(viewer: AbstractBaseUser | AnonymousUser) -> bool:
    """Name reviewers to other reviewers; to requesters, only where manifests name them too.

    A verdict is the team's, not one person's: a requester who sees a name tends to argue
    with, or lobby, that reviewer instead of revising the prompt, and reviewers judge more
    freely when their name does not travel. Reviewers see each other's names on the review
    pages anyway. When MANIFEST_REVIEWER_NAMES lets names go out with every published file,
    hiding them here would hide nothing, so the requester sees them too.
    """
    return settings.MANIFEST_REVIEWER_NAMES or is_reviewer(viewer)


def request_outcome(
    image_request: ImageRequest, *, viewer: AbstractBaseUser | AnonymousUser
) -> RequestOutcome:
    """Gather what became of the request and each output, in a constant number of queries."""
    generations = list(
        image_request.generations.prefetch_related(
            Prefetch("outputs", queryset=Asset.objects.order_by("index", "id"))
        ).order_by("variant", "id")
    )
    # The decisions that count, oldest first: the same rows `verdicts.counting_rows` gives.
    decisions = list(
        Decision.objects.filter(output__request=image_request, undone_at__isnull=True)
        .select_related("reviewer")
        .order_by("created_at", "id")
    )
    # In a workflow, the verdicts of the stage the request is in (or was decided in) count.
    tallies = standings(
        (d.output_id, decider(d.reviewer_id, d.guest_link_id, d.guest_name), d.verdict)
        for d in decisions
        if d.stage_id == image_request.stage_id
    )
    publications: dict[int, list[PublicationOutcome]] = defaultdict(list)
    for publication in (
        Publication.objects.filter(request=image_request)
        .defer("manifest")
        .order_by("created_at", "id")
    ):
        publications[publication.output_id].append(_publication_outcome(publication))
    linked = _linked_requests(image_request)
    notes, revisions = _notes_and_revisions(decisions, linked, shows_reviewer_names(viewer))

    variants = []
    for generation in generations:
        outputs = [
            _output_outcome(
                image_request,
                output,
                tallies.get(output.pk),
                notes=notes.get(output.pk, []),
                publications=publications.get(output.pk, []),
                revision=revisions.get(output.pk),
            )
            for output in generation.outputs.all()
        ]
        variants.append(_variant_outcome(generation, outputs))

    every_output = [output for variant in variants for output in variant.outputs]
    live = any(p.state == P.PUBLISHED for o in every_output for p in o.publications)
    revision = next((o.revision for o in every_output if o.revision), None)
    standing = standing_of(image_request.status, published=live)
    words = status_words(image_request.status, published=live)
    if image_request.status == R.CHANGES_REQUESTED and revision:
        words += f" — revision #{revision.pk}"
    return RequestOutcome(
        image_request=image_request,
        standing=standing,
        standing_words=words,
        approved_outputs=sum(1 for o in every_output if o.verdict == APPROVED),
        parent=linked.get(image_request.parent_id),
        revision=revision,
        variants=variants,
        credits=sum((g.credits or Decimal(0) for g in generations), Decimal(0)),
        publishing=any(p.state == P.PENDING for o in every_output for p in o.publications),
    )


def _linked_requests(image_request: ImageRequest) -> dict[int, ImageRequest]:
    """The request this one revises and the revisions its change requests started.

    One query whether or not there are any, so that the page's query count never varies.
    """
    started = Decision.objects.filter(
        output__request=image_request, undone_at__isnull=True, revision__isnull=False
    ).values("revision_id")
    live = Publication.objects.filter(request=OuterRef("pk"), state=P.PUBLISHED)
    rows = (
        ImageRequest.objects.filter(Q(pk=image_request.parent_id) | Q(pk__in=started))
        .annotate(live_publication=Exists(live))
        .only("pk", "status", "revision", "created_at")
    )
    return {row.pk: row for row in rows}


def _notes_and_revisions(
    decisions: list[Decision], linked: dict[int, ImageRequest], show_names: bool
) -> tuple[dict[int, list[Note]], dict[int, ImageRequest]]:
    """What each reviewer said last on each output, and the revision it started, if any."""
    latest: dict[tuple[int, Decider], Decision] = {}
    for d in decisions:
        latest[(d.output_id, decider(d.reviewer_id, d.guest_link_id, d.guest_name))] = d
    notes: dict[int, list[Note]] = defaultdict(list)
    revisions: dict[int, ImageRequest] = {}
    for decision in sorted(latest.values(), key=lambda d: (d.created_at, d.pk)):
        if decision.revision_id in linked:
            revisions[decision.output_id] = linked[decision.revision_id]
        # An approval needs no explanation; it is shown only when it says something.
        if decision.verdict == V.APPROVE and not decision.comment:
            continue
        notes[decision.output_id].append(
            Note(
                verdict=decision.verdict,
                verdict_words=VERDICT_WORDS[_verdict_key(decision.verdict)],
                reason=decision.get_reason_display() if decision.reason else "",
                comment=decision.comment,
                by=_decided_by(decision, show_names),
                at=decision.created_at,
            )
        )
    return notes, revisions


def _verdict_key(verdict: str) -> str:
    return {V.APPROVE: APPROVED, V.REJECT: REJECTED, V.CHANGES: CHANGES}[verdict]


def _decided_by(decision: Decision, show_names: bool) -> str:
    if decision.guest_link_id is not None:
        return f"{decision.guest_name} (guest)" if show_names else "a guest reviewer"
    if decision.reviewer is None:
        return "the acceptance rules"
    if not show_names:
        return "a reviewer"
    return decision.reviewer.get_full_name() or decision.reviewer.get_username()


def _publication_outcome(publication: Publication) -> PublicationOutcome:
    return PublicationOutcome(
        pk=publication.pk,
        state=publication.state,
        state_words=publication.get_state_display(),
        target=publication.target,
        published_at=publication.published_at,
        retract_reason=publication.retract_reason,
        failure_message=publication.failure_message,
    )


def _output_outcome(
    image_request: ImageRequest,
    output: Asset,
    standing: OutputTally | None,
    *,
    notes: list[Note],
    publications: list[PublicationOutcome],
    revision: ImageRequest | None,
) -> OutputOutcome:
    standing = standing or OutputTally()
    verdict = output_verdict(image_request, standing)
    return OutputOutcome(
        output=output,
        verdict=verdict,
        verdict_words=VERDICT_WORDS[verdict],
        approvals=len(standing.approvals),
        approvals_needed=(
            image_request.stage.required_approvals
            if image_request.stage_id
            else image_request.required_approvals
        ),
        notes=notes,
        publications=publications,
        revision=revision,
    )


def output_verdict(image_request: ImageRequest, standing: OutputTally | None) -> str:
    """An output's verdict: approved, rejected, changes, awaiting (review still open) or
    closed (review ended without a verdict on it)."""
    standing = standing or OutputTally()
    if standing.rejected:
        return REJECTED
    if standing.changes:
        return CHANGES
    stage = image_request.stage if image_request.stage_id else None
    if standing.approved(stage.required_approvals if stage else image_request.required_approvals):
        return APPROVED
    if image_request.status in (R.GENERATING, R.IN_REVIEW):
        return AWAITING
    return CLOSED


def _variant_outcome(generation: Generation, outputs: list[OutputOutcome]) -> VariantOutcome:
    label = f"Variant {generation.variant}"
    if generation.duplicate_of_id:
        label += " (duplicate task)"
    elif generation.retry_of_id:
        label += " (retry)"
    if generation.state in (Generation.State.FAILED, Generation.State.TIMED_OUT):
        message = generation.failure_message or (
            "the provider did not finish in time"
            if generation.state == Generation.State.TIMED_OUT
            else "no reason given"
        )
        return VariantOutcome(generation, label, FAILED, f"Failed: {message}", outputs)
    if not generation.is_final:
        return VariantOutcome(generation, label, GENERATING, "Generating…", outputs)
    return VariantOutcome(generation, label, DONE, "", outputs)
