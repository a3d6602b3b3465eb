import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class AspectRatio(models.TextChoices):
    SQUARE = "1:1", "1:1 square"
    PORTRAIT_2_3 = "2:3", "2:3 portrait"
    LANDSCAPE_3_2 = "3:2", "3:2 landscape"
    PORTRAIT_3_4 = "3:4", "3:4 portrait"
    LANDSCAPE_4_3 = "4:3", "4:3 landscape"
    PORTRAIT_4_5 = "4:5", "4:5 portrait"
    LANDSCAPE_5_4 = "5:4", "5:4 landscape"
    PORTRAIT_9_16 = "9:16", "9:16 tall"
    LANDSCAPE_16_9 = "16:9", "16:9 wide"
    LANDSCAPE_21_9 = "21:9", "21:9 cinema"
    AUTO = "auto", "auto"


class Resolution(models.TextChoices):
    R1K = "1K", "1K (about 1 MP)"
    R2K = "2K", "2K (about 4 MP)"
    R4K = "4K", "4K (about 16 MP)"


class OutputFormat(models.TextChoices):
    PNG = "png", "PNG"
    JPG = "jpg", "JPEG"


MAX_PROMPT_LENGTH = 10000
MAX_VARIANTS = 4


def new_callback_token() -> str:
    return secrets.token_urlsafe(32)


class Workflow(models.Model):
    """Ordered review stages a request goes through, each decided by its own group.

    A request with no workflow (and none marked default) has one implicit stage: any
    reviewer, with the request's own approvals and quota, as before workflows existed.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Requests created without a workflow get this one.
    is_default = models.BooleanField(default=False)
    # Where a revision starts: the stage at this position (1 is the first).
    revision_starts_at = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_workflow",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Stage(models.Model):
    """One step of a workflow: who decides it, and how many approvals make it pass."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="stages")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    reviewers = models.ForeignKey(
        "auth.Group", on_delete=models.PROTECT, related_name="review_stages"
    )
    # Approvals from distinct reviewers that pass one output through this stage, and
    # outputs that must pass for the request to move on.
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approval_quota = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["workflow_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "position"], name="unique_stage_position"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow}: {self.position}. {self.name}"


class ImageRequest(models.Model):
    """What was asked: a prompt (and, for edits, references) and its parameters."""

    class Priority(models.IntegerChoices):
        LOW = 1, "Low"
        NORMAL = 2, "Normal"
        HIGH = 3, "High"
        URGENT = 4, "Urgent"

    class Mode(models.TextChoices):
        GENERATE = "generate", "Generate"
        EDIT = "edit", "Edit"

    class Status(models.TextChoices):
        GENERATING = "generating", "Generating"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        FAILED = "failed", "Failed"

    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.GENERATE)
    prompt = models.TextField(max_length=MAX_PROMPT_LENGTH)
    aspect_ratio = models.CharField(
        max_length=8, choices=AspectRatio.choices, default=AspectRatio.SQUARE
    )
    resolution = models.CharField(max_length=4, choices=Resolution.choices, default=Resolution.R1K)
    output_format = models.CharField(
        max_length=4, choices=OutputFormat.choices, default=OutputFormat.PNG
    )
    variants = models.PositiveSmallIntegerField(default=1)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="image_requests"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="revisions"
    )
    revision = models.PositiveIntegerField(default=1)
    # Approvals from distinct reviewers that make one output approved, and approved outputs
    # that make the request approved ("2 approved of 4 variants").
    required_approvals = models.PositiveSmallIntegerField(default=1)
    approval_quota = models.PositiveSmallIntegerField(default=1)
    # A soft claim: who has the review page open, shown to other reviewers.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    acceptance_rules = models.JSONField(default=dict, blank=True)
    # Publish each output as it is approved: None follows the PUBLISH_ON_APPROVAL setting.
    auto_publish = models.BooleanField(null=True, blank=True)
    # The review stages, and the one the request is in now; None: the single implicit stage.
    workflow = models.ForeignKey(
        Workflow, null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    stage = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.GENERATING, db_index=True
    )
    # Whether any output failed a check, copied here from its outputs so that the queue's
    # flagged filter is an index range rather than a search through every output.
    flagged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at", "id"]),
            models.Index(fields=["status", "mode", "created_at", "id"]),
            models.Index(
                fields=["status", "created_at", "id"],
                condition=models.Q(flagged=True),
                name="request_flagged_queue_idx",
            ),
            models.Index(fields=["requester", "created_at"]),
            # Work waiting now and for how long: the queue's age, the stuck reviews.
            models.Index(fields=["status", "updated_at"], name="request_status_updated_idx"),
            # The dashboard's cohort: the requests created in a period.
            models.Index(fields=["created_at"], name="request_created_idx"),
            # The queue sorted by due date, or by priority.
            models.Index(fields=["status", "due_at", "id"], name="request_due_queue_idx"),
            models.Index(
                fields=["status", "-priority", "created_at", "id"],
                name="request_priority_queue_idx",
            ),
            models.Index(fields=["status", "stage"], name="request_stage_queue_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.prompt[:60]}"

    def get_absolute_url(self) -> str:
        return reverse("request_detail", args=[self.pk])

    @property
    def is_final(self) -> bool:
        return self.status not in (self.Status.GENERATING, self.Status.IN_REVIEW)


class Generation(models.Model):
    """One provider task: a variant of a request, or a retry of one."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUBMITTING = "submitting", "Submitting"
        SUBMITTED = "submitted", "Submitted"
        SUCCEEDED = "succeeded", "Succeeded"
        STORED = "stored", "Stored"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"

    FINAL_STATES = (State.STORED, State.FAILED, State.TIMED_OUT)

    request = models.ForeignKey(ImageRequest, on_delete=models.CASCADE, related_name="generations")
    variant = models.PositiveSmallIntegerField(default=1)
    # Set on a provider task we did not mean to create (a create that timed out, then was
    # resubmitted): it is billed, so it is kept and shown, never hidden.
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="duplicates"
    )
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    provider = models.CharField(max_length=32, default="kie")
    # NULL, not "", until createTask answers: the unique constraint ignores NULLs.
    provider_task_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    provider_state = models.CharField(max_length=16, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queries = models.PositiveIntegerField(default=0)
    # recordInfo calls that failed in a row: the backoff of the next query grows with it.
    query_failures = models.PositiveSmallIntegerField(default=0)
    store_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=16, blank=True)
    failure_message = models.TextField(blank=True)
    credits = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    # Set when the provider named no figure (recordInfo has none; the callback may not have
    # come) and the credits are the price list's.
    credits_estimated = models.BooleanField(default=False)
    result_urls = models.JSONField(default=list, blank=True)
    callback_token = models.CharField(max_length=64, unique=True, default=new_callback_token)
    queued_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["request_id", "variant", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_task_id"], name="unique_provider_task"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"]),
            # The dashboard's periods: work queued, completed, or failed in a range of days.
            models.Index(fields=["queued_at"], name="generation_queued_idx"),
            models.Index(fields=["completed_at"], name="generation_completed_idx"),
            models.Index(fields=["state", "updated_at"], name="generation_state_updated_idx"),
            # The daily figures find the generations changed since their last refresh.
            models.Index(fields=["updated_at"], name="generation_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"generation {self.pk} of request {self.request_id} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES

    def callback_url(self) -> str:
        """The per-generation URL the provider calls back, with its unguessable token."""
        path = reverse("provider_callback", args=[self.pk, self.callback_token])
        return f"{settings.PUBLIC_BASE_URL}{path}"


def asset_path(asset: "Asset", filename: str) -> str:
    return f"{asset.kind}s/{asset.sha256[:2]}/{asset.sha256}/{filename}"


class Asset(models.Model):
    """One stored image file: a reference given to an edit, or an output of a generation."""

    class Kind(models.TextChoices):
        REFERENCE = "reference", "Reference"
        OUTPUT = "output", "Output"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    request = models.ForeignKey(ImageRequest, on_delete=models.CASCADE, related_name="assets")
    generation = models.ForeignKey(
        Generation, null=True, blank=True, on_delete=models.CASCADE, related_name="outputs"
    )
    index = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to=asset_path, max_length=255)
    thumbnail = models.FileField(upload_to=asset_path, max_length=255, blank=True)
    # A rendition of an output for looking at on screen (about 2,000 px on the long side):
    # the review page shows it, the original loads only when a reviewer zooms past it.
    preview = models.FileField(upload_to=asset_path, max_length=255, blank=True)
    preview_width = models.PositiveIntegerField(null=True, blank=True)
    preview_height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    source_url = models.URLField(max_length=2000, blank=True)
    provider_url = models.URLField(max_length=2000, blank=True)
    provider_url_expires_at = models.DateTimeField(null=True, blank=True)
    checks = models.JSONField(default=list, blank=True)
    flagged = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["request_id", "generation_id", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "index"],
                condition=models.Q(kind="output"),
                name="unique_output_per_generation_index",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.width}x{self.height})"


class Decision(models.Model):
    """One reviewer's verdict on one output. Append-only."""

    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        CHANGES = "changes", "Request changes"

    class Reason(models.TextChoices):
        PROMPT = "prompt", "Does not follow the prompt"
        ARTEFACTS = "artefacts", "Artefacts or distortions"
        TEXT = "text", "Wrong text rendering"
        OFF_BRAND = "off_brand", "Off-brand"
        SIZE = "size", "Wrong aspect or size"
        UNSAFE = "unsafe", "Unsafe"
        OTHER = "other", "Other"

    output = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="decisions")
    # Empty for a decision the acceptance rules made on their own.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="decisions",
    )
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    comment = models.TextField(blank=True)
    revision = models.ForeignKey(
        ImageRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The workflow stage the verdict was given in; None for a request without a workflow.
    stage = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    # A verdict given through a guest link: the link and the name the guest gave.
    guest_link = models.ForeignKey(
        "GuestLink", null=True, blank=True, on_delete=models.PROTECT, related_name="decisions"
    )
    guest_name = models.CharField(max_length=100, blank=True)
    # Shared by the decisions of one bulk action, which one undo takes back together.
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # An undone decision stays in the history but no longer counts.
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["output", "created_at"]),
            # The daily figures find the days a decision or an undo touched since their last
            # refresh.
            models.Index(fields=["created_at"], name="decision_created_idx"),
            models.Index(fields=["undone_at"], name="decision_undone_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} of output {self.output_id} by {self.decided_by()}"

    def decided_by(self) -> str:
        """Who gave the verdict, in words: a reviewer, a guest and their link, or the rules."""
        if self.guest_link_id is not None:
            return f"{self.guest_name} (guest, link #{self.guest_link_id})"
        return str(self.reviewer) if self.reviewer_id else "the acceptance rules"


def new_guest_secret() -> str:
    return secrets.token_urlsafe(24)


class GuestLink(models.Model):
    """A share of some requests with someone who has no account: signed, expiring, revocable.

    The link carries the row's id and secret, signed with the site's key; revoking it or
    letting it expire ends it at once, whoever holds the URL.
    """

    label = models.CharField(max_length=100, blank=True)
    secret = models.CharField(max_length=64, unique=True, default=new_guest_secret)
    requests = models.ManyToManyField(ImageRequest, related_name="guest_links")
    may_comment = models.BooleanField(default=True)
    may_decide = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="guest_links"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"guest link {self.pk} ({self.label or 'unnamed'})"


class Annotation(models.Model):
    """A note pinned to a point, or a box, on an output, in 0-1 coordinates of the image."""

    class Shape(models.TextChoices):
        PIN = "pin", "Pin"
        BOX = "box", "Box"

    output = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="annotations")
    shape = models.CharField(max_length=8, choices=Shape.choices, default=Shape.PIN)
    # The pin, or the box's upper left corner, as fractions of the image's width and height.
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField(default=0)
    height = models.FloatField(default=0)
    comment = models.TextField(max_length=2000)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="annotations",
    )
    guest_link = models.ForeignKey(
        GuestLink, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    guest_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The revision whose request for changes this note went into.
    answered_by = models.ForeignKey(
        ImageRequest,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="answered_annotations",
    )

    class Meta:
        ordering = ["output_id", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(x__gte=0, x__lte=1, y__gte=0, y__lte=1),
                name="annotation_inside_image",
            ),
            models.CheckConstraint(
                condition=models.Q(width__gte=0, height__gte=0),
                name="annotation_size_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.shape} on output {self.output_id}: {self.comment[:40]}"

    @property
    def by(self) -> str:
        """Who wrote it, as shown beside it."""
        if self.author_id:
            return str(self.author)
        return f"{self.guest_name} (guest)"


class CallbackReceipt(models.Model):
    """A provider callback as received: the evidence for "the callback never came"."""

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        BAD_TOKEN = "bad_token", "Bad token"
        BAD_SIGNATURE = "bad_signature", "Bad signature"
        MALFORMED = "malformed", "Malformed body"
        FOREIGN = "foreign", "Names a task not created for this generation"
        UNKNOWN_TASK = "unknown_task", "Names a task the provider will not report on"
        OVER_LIMIT = "over_limit", "Names more unclaimed tasks than one generation may hold"

    generation = models.ForeignKey(
        Generation, null=True, blank=True, on_delete=models.CASCADE, related_name="receipts"
    )
    task_id = models.CharField(max_length=128, blank=True, db_index=True)
    code = models.IntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    verified = models.BooleanField(default=False)
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When the reconciler may next wake the refresh of a task this callback named and no
    # generation holds yet: a lease, so that a backlog is not flooded with the same job.
    recheck_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # How many refused receipts a window already keeps for a generation.
            models.Index(
                fields=["generation", "outcome", "received_at"], name="receipt_window_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"callback {self.pk} for {self.task_id or '?'} ({self.outcome})"


class RefusedCallbackTally(models.Model):
    """Refused callbacks counted, not kept: what came past the few kept in full per window."""

    generation = models.ForeignKey(
        Generation, on_delete=models.CASCADE, related_name="refused_tallies"
    )
    outcome = models.CharField(max_length=16, choices=CallbackReceipt.Outcome.choices)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    last_remote_addr = models.GenericIPAddressField(null=True, blank=True)
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-window_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "outcome", "window_start"], name="one_tally_per_window"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.count} {self.outcome} callbacks for generation {self.generation_id}"


class Publication(models.Model):
    """An approved output copied to a publish target under a stable name, manifest beside it.

    One per output and target: publishing twice finds the first. The job that copies the
    file may run twice or be killed mid-copy; it always writes the same key, so a target
    ends with one file, whose sha256 is checked after it landed.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Publishing"
        PUBLISHED = "published", "Published"
        FAILED = "failed", "Publishing failed"
        RETRACTED = "retracted", "Retracted"

    output = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="publications")
    request = models.ForeignKey(ImageRequest, on_delete=models.CASCADE, related_name="publications")
    target = models.CharField(max_length=32)
    key = models.CharField(max_length=500)
    manifest_key = models.CharField(max_length=500)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    # Of the file as published, which carries Content Credentials the stored output lacks.
    sha256 = models.CharField(max_length=64, blank=True)
    bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # "signed", or "skipped" with the reason in credentials_note: never silently dropped.
    credentials = models.CharField(max_length=16, blank=True)
    credentials_note = models.TextField(blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failure_message = models.TextField(blank=True)
    retracted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retract_reason = models.TextField(blank=True)
    retracted_at = models.DateTimeField(null=True, blank=True)
    # Set once the retracted file is gone from the target and its manifest says why.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["output", "target"], name="one_publication_per_target"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"publication {self.pk} of output {self.output_id} to {self.target} ({self.state})"


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookEndpoint(models.Model):
    """A subscriber's URL, told of the event types it asks for, signed with its own secret."""

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_webhook_secret)
    # Empty: every event type.
    event_types = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    # Set when a delivery ran out of attempts; cleared by the next successful one.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


def new_webhook_event_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookEvent(models.Model):
    """Something subscribers are told of. Its `event_id` is the `webhook-id` of every attempt
    to every endpoint, so receivers can drop what they already have."""

    event_id = models.CharField(max_length=40, unique=True, default=new_webhook_event_id)
    type = models.CharField(max_length=48, db_index=True)
    payload = models.JSONField()
    request = models.ForeignKey(
        ImageRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="one_delivery_per_endpoint"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what came back and how long it took."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveSmallIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"


class Event(models.Model):
    """The audit log: every state change, what caused it, from and to."""

    request = models.ForeignKey(
        ImageRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    generation = models.ForeignKey(
        Generation, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    publication = models.ForeignKey(
        Publication, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    subject = models.CharField(max_length=16)
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    source = models.CharField(max_length=32)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The dashboard reads one subject's changes in a period (the account's halts, the
        # creates sent back to wait) among every generation's.
        indexes = [
            models.Index(
                fields=["subject", "from_state", "to_state", "created_at"],
                name="event_subject_move_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.from_state or '-'} -> {self.to_state} by {self.source}"


class ProviderAccount(models.Model):
    """What we know of our account at a provider: credits, and whether submitting is halted.

    The circuit opens on 401/402/433/505: waiting work stays queued with the reason shown to
    admins, and closes after a successful credit check or an admin's word.
    """

    provider = models.CharField(max_length=32, unique=True, default="kie")
    credits = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    credits_checked_at = models.DateTimeField(null=True, blank=True)
    circuit_open = models.BooleanField(default=False)
    circuit_code = models.CharField(max_length=16, blank=True)
    circuit_reason = models.TextField(blank=True)
    circuit_opened_at = models.DateTimeField(null=True, blank=True)
    # Closed again but not yet proven: one create at a time until one is accepted, so that
    # a check that misjudged the account does not release a burst into the same refusal.
    on_trial = models.BooleanField(default=False)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        state = f"halted ({self.circuit_code})" if self.circuit_open else "open for work"
        return f"{self.provider} account, {state}"


class RateSlot(models.Model):
    """A reserved moment for one provider call, so limits hold across processes and hosts."""

    key = models.CharField(max_length=200)
    at = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["key", "at"])]

    def __str__(self) -> str:
        return f"{self.key} @ {self.at:.3f}"


class RateWindow(models.Model):
    """The row a reservation locks, one per limited key."""

    key = models.CharField(max_length=200, primary_key=True)

    def __str__(self) -> str:
        return self.key


class Alert(models.Model):
    """A drift or health condition: raised once while it lasts, resolved when it ends."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    # The detector that raised it ("provider_latency", "low_credits" ...) and what it is
    # about ("edit", "kie" ...): one unresolved alert per pair.
    kind = models.CharField(max_length=48)
    subject = models.CharField(max_length=100, blank=True)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.OPEN, db_index=True
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    value = models.FloatField(null=True, blank=True)
    baseline = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    # Where to look: a page of this app.
    link = models.CharField(max_length=500, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=~models.Q(state="resolved"),
                name="one_unresolved_alert_per_condition",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.state})"


class Notification(models.Model):
    """Something a user is told: listed in the app, and emailed as their preferences say."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    # "review_digest", "request_decided", "request_failed",
    # "alert_opened", "alert_resolved".
    kind = models.CharField(max_length=32)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    request = models.ForeignKey(
        ImageRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Held back until then (a decision that may still be undone); None: shown at once.
    deliver_after = models.DateTimeField(null=True, blank=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient_id}: {self.subject}"


class NotificationPreference(models.Model):
    """What a user wants to be told, and how often."""

    class Digest(models.TextChoices):
        IMMEDIATE = "immediate", "As soon as something awaits review"
        HOURLY = "hourly", "Hourly"
        DAILY = "daily", "Daily"
        OFF = "off", "Off"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    review_digest = models.CharField(max_length=16, choices=Digest.choices, default=Digest.DAILY)
    email_decisions = models.BooleanField(default=True)
    email_alerts = models.BooleanField(default=True)
    last_digest_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notification preferences of {self.user_id}"


class DailyFigure(models.Model):
    """Cost and review figures of the requests created on one day, rolled up.

    One row per day, mode, resolution, requester, figure and label, kept equal to a recount
    of its day by `actions.figures.refresh`; the dashboard sums rows instead of scanning
    every output of a period. Figures:
      "requests": count = requests created;
      "spend": credits and estimated credits of every generation of those requests;
      "verdict": label = approve/reject/changes, count = outputs standing so;
      "loss": label = "<verdict>:<reason>", count = outputs, credits = their share;
      "check": label = check name, count = outputs checked, failed = outputs failing it;
      "undone": count = decisions undone.
    """

    day = models.DateField()
    mode = models.CharField(max_length=16)
    resolution = models.CharField(max_length=4)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    figure = models.CharField(max_length=16)
    label = models.CharField(max_length=120, blank=True)
    count = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    credits = models.DecimalField(max_digits=16, decimal_places=4, default=0)
    estimated = models.DecimalField(max_digits=16, decimal_places=4, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "mode", "resolution", "requester", "figure", "label"],
                name="one_daily_figure_per_cell",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.figure} {self.label}: {self.count}"


class FigureWatermark(models.Model):
    """How far the daily figures have taken in changes: the one row locks their refresh."""

    name = models.CharField(max_length=32, unique=True, default="daily")
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # The local time zone the days were cut in: another one means a full rebuild.
    time_zone = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} figures as of {self.refreshed_at}"


class ApiToken(models.Model):
    """A personal API token: shown once, stored as a hash, scoped and revocable."""

    class Scope(models.TextChoices):
        READ = "read", "Read requests and outputs"
        REQUEST = "request", "Create requests"
        REVIEW = "review", "Decide on outputs"
        PUBLISH = "publish", "Publish and export"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The token reads "ir_<prefix>_<secret>": the prefix finds the row, the secret's
    # SHA-256 proves it.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} (ir_{self.prefix}_…)"


class IdempotencyRecord(models.Model):
    """The first answer to a create sent with an Idempotency-Key, replayed for 24 hours."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # What the key was first used for: the endpoint and a SHA-256 of the body.
    endpoint = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_key_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.user_id}"
