"""The shapes the API sends and takes, as the OpenAPI schema publishes them.

Input shapes document the bodies only: the fields are validated by the same Django forms
the pages and the CSV batch use, so a rule changed there changes here.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from imagereview.forms import MAX_REQUIRED_APPROVALS
from imagereview.media import MAX_REFERENCES
from imagereview.models import (
    MAX_PROMPT_LENGTH,
    MAX_VARIANTS,
    AspectRatio,
    Decision,
    OutputFormat,
    Resolution,
)

Mode = Literal["generate", "edit"]
Status = Literal["generating", "in_review", "approved", "rejected", "changes_requested", "failed"]
Verdict = Literal["approved", "rejected", "changes", ""]


class Problem(Schema):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: dict[str, list[str]] | None = None


# What any operation may answer about its caller: not authenticated, not allowed, a body
# over the cap, too many calls.
CALLER_PROBLEMS = {status: Problem for status in (401, 403, 413, 429)}


class Limits(Schema):
    rate_per_minute: int
    max_body_bytes: int
    max_upload_bytes: int
    max_references: int
    max_variants: int
    max_prompt_length: int


class Me(Schema):
    username: str
    is_reviewer: bool
    is_staff: bool
    scopes: list[str]
    limits: Limits


class RequestSummary(Schema):
    id: int
    mode: Mode
    status: Status
    prompt: str
    resolution: str
    aspect_ratio: str
    variants: int
    revision: int
    parent_id: int | None
    requester: str
    due_at: datetime | None
    priority: Literal["low", "normal", "high", "urgent"]
    created_at: datetime
    updated_at: datetime
    url: str


class GenerationOut(Schema):
    id: int
    variant: int
    state: str
    provider_task_id: str | None
    failure_code: str
    failure_message: str
    credits: Decimal | None
    attempts: int


class PublicationOut(Schema):
    id: int
    state: Literal["pending", "published", "failed", "retracted"]
    url: str


class CheckOut(Schema):
    name: str
    passed: bool
    detail: str


class OutputOut(Schema):
    id: int
    generation_id: int | None
    variant: int
    width: int
    height: int
    bytes: int
    sha256: str
    content_type: str
    checks: list[CheckOut]
    flags: list[str] = Field(description="The names of the acceptance checks it failed.")
    verdict: Verdict
    download_url: str
    thumbnail_url: str
    publication: PublicationOut | None


class ReferenceOut(Schema):
    id: int
    width: int
    height: int
    download_url: str
    thumbnail_url: str


class DecisionOut(Schema):
    id: int
    output_id: int
    verdict: Literal["approve", "reject", "changes"]
    reason: str
    comment: str
    decided_by: Literal["reviewer", "guest", "acceptance_rules"] = Field(
        description="Who gave the verdict: a reviewer, a guest through a shared link, or the "
        "acceptance rules on their own."
    )
    reviewer: str | None = Field(
        description="Null for a guest or the acceptance rules, or when reviewers' names are "
        "not shown to this caller (as on the request's page)."
    )
    guest_name: str | None = Field(
        description="The name a guest gave, when names are shown to this caller."
    )
    stage: str | None = Field(
        description="The review stage the verdict was given in; null without a workflow."
    )
    created_at: datetime
    undone: bool


class RevisionOut(Schema):
    id: int
    revision: int
    status: Status


class RequestDetail(RequestSummary):
    output_format: str
    required_approvals: int
    approval_quota: int
    workflow: str | None = Field(description="The review workflow's name; null: no stages.")
    stage: str | None = Field(description="The stage the request is in, or was decided in.")
    credits: Decimal
    generations: list[GenerationOut]
    outputs: list[OutputOut]
    references: list[ReferenceOut]
    decisions: list[DecisionOut]
    revisions: list[RevisionOut]
    is_final: bool


class RequestPage(Schema):
    items: list[RequestSummary]
    next_cursor: str | None


class LibraryOutput(Schema):
    id: int
    request_id: int
    variant: int
    sha256: str
    width: int
    height: int
    download_url: str
    published: bool


class OutputPage(Schema):
    items: list[LibraryOutput]
    next_cursor: str | None


class Publishing(Schema):
    publication: PublicationOut


AspectRatioValue = Literal[tuple(AspectRatio.values)]
ResolutionValue = Literal[tuple(Resolution.values)]
OutputFormatValue = Literal[tuple(OutputFormat.values)]
VariantCount = Annotated[int, Field(ge=1, le=MAX_VARIANTS)]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_LENGTH)]


class Input(Schema):
    """A body: fields beyond those listed are refused."""

    model_config = ConfigDict(extra="forbid")


class RequestCreate(Input):
    """A generation, or an edit of reference images (uploaded as multipart files
    `references`, fetched from `reference_urls`, or earlier outputs by id).

    Rules across fields are the web form's too: `approval_quota` at most `variants`; an edit
    needs 1 to 8 references in all, each a JPEG, PNG or WebP of at most 30 MB."""

    mode: Mode = "generate"
    prompt: Prompt
    aspect_ratio: AspectRatioValue | None = Field(None, description="Default 1:1; edits auto.")
    resolution: ResolutionValue | None = Field(None, description="Default 1K.")
    output_format: OutputFormatValue | None = Field(None, description="Default png.")
    variants: VariantCount | None = Field(None, description="Default 1.")
    required_approvals: Annotated[int, Field(ge=1, le=MAX_REQUIRED_APPROVALS)] | None = Field(
        None, description="Approvals from distinct reviewers per output; default 1."
    )
    approval_quota: VariantCount | None = Field(
        None, description="Approved outputs that approve the request; default 1."
    )
    auto_reject: bool | None = Field(None, description="Reject outputs failing a check.")
    auto_publish: bool | None = Field(None, description="Null: as the site is set up.")
    due_at: datetime | date | None = Field(
        None,
        description="When the review is due, not in the past: a date (its end) or date and "
        "time, in the site's time zone unless an offset is given. Null: no due date.",
    )
    priority: Literal["low", "normal", "high", "urgent"] | None = Field(
        None, description="Default normal."
    )
    workflow: str | None = Field(
        None, description="A review workflow, by name. Null: the default workflow, if one is set."
    )
    reference_urls: list[str] = Field([], max_length=MAX_REFERENCES)
    reference_output_ids: list[int] = Field([], max_length=MAX_REFERENCES)


class DecisionIn(Input):
    verdict: Literal["approve", "reject"]
    reason: Literal[("", *Decision.Reason.values)] = Field("", description="Required for a reject.")
    comment: Annotated[str, Field(max_length=2000)] = ""
    seen_decision_id: Annotated[int, Field(ge=0)] | None = Field(
        None, description="The latest decision on the output the reviewer saw (0: none)."
    )


class ChangesIn(Input):
    """Omitted parameters are the request's own."""

    prompt: Prompt | None = None
    aspect_ratio: AspectRatioValue | None = None
    resolution: ResolutionValue | None = None
    output_format: OutputFormatValue | None = None
    variants: VariantCount | None = None
    edit_from_output: bool = False
    comment: Annotated[str, Field(max_length=2000)] = ""


class PublishIn(Input):
    target: str | None = Field(None, description="Default: the site's default target.")
