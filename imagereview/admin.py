from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from imagereview import actions
from imagereview.actions import alerts, guests, publishing, tokens, webhooks
from imagereview.actions.reconcile import ask_refresh, cancel_generation
from imagereview.forms import WebhookEndpointForm
from imagereview.models import (
    Alert,
    Annotation,
    ApiToken,
    Asset,
    CallbackReceipt,
    Decision,
    Event,
    Generation,
    GuestLink,
    IdempotencyRecord,
    ImageRequest,
    ProviderAccount,
    Publication,
    RefusedCallbackTally,
    Stage,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    Workflow,
)


class RecordAdmin(admin.ModelAdmin):
    """A record of what happened: shown, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class GenerationInline(admin.TabularInline):
    model = Generation
    extra = 0
    fields = ("variant", "state", "provider_state", "provider_task_id", "attempts", "credits")
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(ImageRequest)
class ImageRequestAdmin(RecordAdmin):
    """What was asked and where it stands: changed only through the actions, which check the
    transition and write the audit event."""

    list_display = (
        "id",
        "short_prompt",
        "mode",
        "status",
        "aspect_ratio",
        "resolution",
        "variants",
        "requester",
        "revision",
        "created_at",
    )
    list_filter = ("status", "mode", "resolution", "aspect_ratio", "created_at")
    search_fields = ("prompt", "generations__provider_task_id", "requester__username")
    list_select_related = ("requester",)
    date_hierarchy = "created_at"
    raw_id_fields = ("parent", "requester")
    inlines = [GenerationInline]
    actions = ["cancel_unfinished", "retry_failed"]

    def has_delete_permission(self, request: HttpRequest, obj: ImageRequest | None = None) -> bool:
        """Only a request that never reached the provider or a reviewer may go; the rest is
        history (cost, files, verdicts) that a deletion would lose."""
        allowed = request.user.has_perm("imagereview.delete_imagerequest")
        return allowed and (obj is None or not has_history(obj))

    def get_deleted_objects(self, objs, request: HttpRequest) -> tuple:
        """Let a request without history take its own rows with it: its unsent generations,
        its references and the events of its creation are never removed by hand otherwise."""
        deleted, counts, refused, protected = super().get_deleted_objects(objs, request)
        if refused and not any(has_history(image_request) for image_request in objs):
            own_rows = {model._meta.verbose_name for model in (Generation, Asset, Event)}
            refused = refused - own_rows
        return deleted, counts, refused, protected

    @admin.display(description="prompt")
    def short_prompt(self, obj: ImageRequest) -> str:
        return obj.prompt[:80]

    @admin.action(description="Cancel the unfinished generations of the selected requests")
    def cancel_unfinished(self, request: HttpRequest, queryset: QuerySet[ImageRequest]) -> None:
        unfinished = Generation.objects.filter(request__in=queryset).exclude(
            state__in=Generation.FINAL_STATES
        )
        done = _each(unfinished, cancel_generation, actor=request.user)
        self.message_user(request, f"{done} generation(s) cancelled.")

    @admin.action(description="Retry the failed generations of the selected requests")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[ImageRequest]) -> None:
        failed = Generation.objects.filter(
            request__in=queryset, state__in=(Generation.State.FAILED, Generation.State.TIMED_OUT)
        )
        done = _each(failed, actions.retry_generation, actor=request.user)
        self.message_user(request, f"{done} generation(s) queued again.")


def has_history(image_request: ImageRequest) -> bool:
    """Whether the request reached the provider, stored a file or was decided on."""
    return (
        image_request.generations.exclude(provider_task_id=None).exists()
        or image_request.assets.filter(kind=Asset.Kind.OUTPUT).exists()
        or Decision.objects.filter(output__request=image_request).exists()
        or image_request.publications.exists()
    )


class BillingRiskFilter(admin.SimpleListFilter):
    """Generations whose cost may be more than what is recorded."""

    title = "billing risk"
    parameter_name = "risk"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [
            ("unanswered", "resubmitted after an unanswered create"),
            ("duplicate", "duplicate task"),
            ("estimated", "credits estimated"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Generation]) -> QuerySet:
        if self.value() == "unanswered":
            # The first task may exist and be billed though no callback ever named it.
            released = Event.objects.filter(
                generation=OuterRef("pk"),
                source="reconciler",
                from_state=Generation.State.SUBMITTING,
                to_state=Generation.State.QUEUED,
            )
            return queryset.filter(Exists(released))
        if self.value() == "duplicate":
            return queryset.exclude(duplicate_of=None)
        if self.value() == "estimated":
            return queryset.filter(credits_estimated=True)
        return queryset


def _each(queryset: QuerySet[Generation], act: Callable[..., object], **context: object) -> int:
    """Run an action on each selected generation; count those it changed (audited there)."""
    return sum(
        1 for pk in queryset.values_list("pk", flat=True) if act(generation_id=pk, **context)
    )


@admin.register(Generation)
class GenerationAdmin(RecordAdmin):
    """Provider facts and states: moved on only by the actions below, each audited."""

    list_display = (
        "id",
        "request_id",
        "variant",
        "state",
        "provider_state",
        "provider_task_id",
        "attempts",
        "credits",
        "credits_estimated",
        "failure_code",
        "submitted_at",
        "completed_at",
    )
    list_filter = ("state", BillingRiskFilter, "provider_state", "failure_code", "provider")
    search_fields = ("provider_task_id", "request__prompt", "=request__id")
    raw_id_fields = ("request", "duplicate_of", "retry_of")
    actions = ["refresh_from_provider", "retry", "cancel"]

    @admin.action(description="Ask the provider for the state of the selected generations")
    def refresh_from_provider(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        done = _each(queryset, ask_refresh, actor=request.user)
        self.message_user(request, f"Refresh queued for {done} generations.")

    @admin.action(description="Cancel the selected unfinished generations")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        done = _each(queryset, cancel_generation, actor=request.user)
        self.message_user(request, f"{done} generations cancelled.")

    @admin.action(description="Retry the selected failed or timed-out generations")
    def retry(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        done = _each(queryset, actions.retry_generation, actor=request.user)
        self.message_user(request, f"{done} generations queued again.")


@admin.register(Asset)
class AssetAdmin(RecordAdmin):
    """Stored files and their hashes, as checked when they were stored."""

    list_display = (
        "id",
        "preview",
        "kind",
        "request_id",
        "generation_id",
        "index",
        "width",
        "height",
        "bytes",
        "content_type",
        "created_at",
    )
    list_filter = ("kind", "content_type")
    search_fields = ("sha256", "=request__id", "generation__provider_task_id")
    raw_id_fields = ("request", "generation")
    actions = ["publish"]

    @admin.display(description="")
    def preview(self, obj: Asset) -> str:
        if not obj.thumbnail:
            return ""
        return format_html('<img src="/assets/{}/thumb/" height="48" alt="">', obj.pk)

    @admin.action(description="Publish the selected approved outputs (default target)")
    def publish(self, request: HttpRequest, queryset: QuerySet[Asset]) -> None:
        published = 0
        for output in queryset.filter(kind=Asset.Kind.OUTPUT).select_related("request"):
            try:
                publishing.publish(output=output, actor=request.user, source="admin")
                published += 1
            except publishing.PublishRefused as refused:
                self.message_user(request, str(refused), level=messages.ERROR)
        self.message_user(request, f"{published} output(s) on their way to publication.")


class UndoneFilter(admin.SimpleListFilter):
    title = "standing"
    parameter_name = "undone"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("no", "counts"), ("yes", "undone")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Decision]) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(undone_at__isnull=self.value() == "no")
        return queryset


@admin.register(Annotation)
class AnnotationAdmin(RecordAdmin):
    """Notes on outputs; reviewers resolve them on the review page."""

    list_display = ("id", "output", "shape", "short_comment", "by", "created_at", "resolved_at")
    list_filter = ("shape", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("comment", "guest_name", "author__username")
    list_select_related = ("output", "author")

    @admin.display(description="Comment")
    def short_comment(self, annotation: Annotation) -> str:
        return annotation.comment[:80]


@admin.register(GuestLink)
class GuestLinkAdmin(RecordAdmin):
    """Guest links: made and revoked on the review pages (or revoked here); the secret that
    opens a link is never shown."""

    list_display = ("id", "label", "created_by", "created_at", "expires_at", "revoked_at", "uses")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "may_decide", "created_at")
    search_fields = ("label", "created_by__username")
    list_select_related = ("created_by",)
    exclude = ("secret",)
    actions = ["revoke_links"]

    @admin.action(description="Revoke the selected links")
    def revoke_links(self, request: HttpRequest, queryset: QuerySet[GuestLink]) -> None:
        for link in queryset:
            guests.revoke(link=link, by=request.user)
        messages.success(request, f"Revoked {len(queryset)} link(s): they no longer open.")


@admin.register(Decision)
class DecisionAdmin(RecordAdmin):
    list_display = ("id", "output_id", "standing", "reason", "reviewer", "created_at")
    list_filter = (UndoneFilter, "verdict", "reason", "created_at")
    search_fields = ("comment", "reviewer__username", "output__request__prompt")
    raw_id_fields = ("output", "reviewer", "revision")

    @admin.display(description="verdict", ordering="verdict")
    def standing(self, obj: Decision) -> str:
        """The verdict, marked when it was taken back and no longer counts."""
        verdict = obj.get_verdict_display()
        if obj.undone_at:
            return f"{verdict} (undone {obj.undone_at:%Y-%m-%d %H:%M})"
        return verdict


@admin.register(CallbackReceipt)
class CallbackReceiptAdmin(RecordAdmin):
    list_display = ("id", "received_at", "task_id", "generation_id", "code", "outcome", "verified")
    list_filter = ("outcome", "verified", "received_at")
    search_fields = ("task_id", "body")
    raw_id_fields = ("generation",)


@admin.register(RefusedCallbackTally)
class RefusedCallbackTallyAdmin(RecordAdmin):
    list_display = ("window_start", "generation_id", "outcome", "count", "last_remote_addr")
    list_filter = ("outcome", "window_start")
    raw_id_fields = ("generation",)


@admin.register(Event)
class EventAdmin(RecordAdmin):
    list_display = (
        "id",
        "created_at",
        "subject",
        "request_id",
        "generation_id",
        "from_state",
        "to_state",
        "source",
        "actor",
    )
    list_filter = ("subject", "to_state", "source", "created_at")
    search_fields = ("note", "=request__id", "generation__provider_task_id")
    raw_id_fields = ("request", "generation", "actor")


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "credits",
        "credits_checked_at",
        "circuit_open",
        "circuit_code",
        "circuit_reason",
        "circuit_opened_at",
    )
    readonly_fields = list_display[1:] + ("next_probe_at", "updated_at")
    actions = ["resume"]

    @admin.action(description="Resume submissions (close the circuit)")
    def resume(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        if actions.close_circuit(note="resumed by an admin", actor=request.user):
            self.message_user(request, "Submissions resume.")


class FailingFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "failing"), ("no", "not failing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(failing_since__isnull=self.value() == "no")
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("id", "url", "description", "event_types", "active", "failing_since")
    list_filter = ("active", FailingFilter)
    search_fields = ("url", "description")
    readonly_fields = ("secret", "failing_since", "created_by", "created_at", "updated_at")
    actions = ["redeliver_failed"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Redeliver the failed deliveries of the selected endpoints")
    def redeliver_failed(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        count = sum(
            webhooks.redeliver_failed(endpoint_id=endpoint_id, actor=request.user)
            for endpoint_id in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{count} failed deliveries sent again.")


@admin.register(WebhookEvent)
class WebhookEventAdmin(RecordAdmin):
    list_display = ("id", "event_id", "type", "request_id", "created_at")
    list_filter = ("type", "created_at")
    search_fields = ("=event_id", "=request__id")
    raw_id_fields = ("request",)


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    fields = ("number", "created_at", "status_code", "duration_ms", "error", "response_excerpt")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = (
        "id",
        "event",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("state", "endpoint", "event__type", "created_at")
    search_fields = ("=event__event_id", "endpoint__url")
    list_select_related = ("event", "endpoint")
    raw_id_fields = ("event", "endpoint")
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver the selected deliveries (same webhook-id)")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent = [
            delivery_id
            for delivery_id, state in queryset.values_list("pk", "state")
            if state != WebhookDelivery.State.PENDING
            and webhooks.redeliver(delivery_id=delivery_id, actor=request.user)
        ]
        self.message_user(request, f"{len(sent)} deliveries sent again.")


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(RecordAdmin):
    list_display = (
        "id",
        "delivery_id",
        "number",
        "status_code",
        "duration_ms",
        "error",
        "created_at",
    )
    list_filter = ("status_code", "created_at")
    search_fields = ("=delivery__event__event_id", "error")
    raw_id_fields = ("delivery",)


@admin.register(Publication)
class PublicationAdmin(RecordAdmin):
    """Publications are made and retracted through their actions, never edited by hand."""

    list_display = (
        "id",
        "output_id",
        "request_id",
        "target",
        "key",
        "state",
        "credentials",
        "published_at",
        "retracted_at",
    )
    list_filter = ("state", "target", "credentials", "published_at")
    search_fields = ("key", "sha256", "=request__id", "=output__id")
    raw_id_fields = ("output", "request", "requested_by", "retracted_by")
    actions = ["retry"]

    @admin.action(description="Try the selected failed publications again")
    def retry(self, request: HttpRequest, queryset: QuerySet[Publication]) -> None:
        retried = 0
        for publication_id in queryset.filter(state=Publication.State.FAILED).values_list(
            "pk", flat=True
        ):
            publishing.retry_publication(publication_id=publication_id, actor=request.user)
            retried += 1
        self.message_user(request, f"{retried} publication(s) tried again.")


@admin.register(Alert)
class AlertAdmin(RecordAdmin):
    list_display = ("id", "opened_at", "kind", "subject", "severity", "state", "title", "value")
    list_filter = ("state", "severity", "kind", "opened_at")
    search_fields = ("title", "detail", "kind", "subject")
    raw_id_fields = ("acknowledged_by",)
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge the selected open alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        acknowledged = 0
        for alert_id in queryset.filter(state=Alert.State.OPEN).values_list("pk", flat=True):
            alerts.acknowledge_alert(alert_id=alert_id, actor=request.user)
            acknowledged += 1
        self.message_user(request, f"{acknowledged} alert(s) acknowledged.")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their owners (the secret is shown to them once); here they are
    seen and revoked, never edited."""

    list_display = (
        "id",
        "name",
        "user",
        "prefix",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "created_at")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "secret_hash",
        "scopes",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        live = list(queryset.filter(revoked_at__isnull=True).values_list("pk", flat=True))
        for token_id in live:
            tokens.revoke_token(token_id=token_id)
        self.message_user(request, f"{len(live)} token(s) revoked.")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(RecordAdmin):
    list_display = ("id", "user", "key", "endpoint", "status_code", "created_at")
    list_filter = ("status_code", "created_at")
    search_fields = ("key", "endpoint", "user__username")


class StageInline(admin.TabularInline):
    model = Stage
    extra = 1
    fields = ("position", "name", "reviewers", "required_approvals", "approval_quota")
    ordering = ("position",)


class WorkflowAdminForm(forms.ModelForm):
    class Meta:
        model = Workflow
        fields = ["name", "description", "is_default", "revision_starts_at"]
        help_texts = {
            "is_default": "Requests created without a workflow get this one. At most one is.",
            "revision_starts_at": "The stage position a revision starts at (1: the first).",
        }

    def clean_is_default(self) -> bool:
        is_default = self.cleaned_data["is_default"]
        other = Workflow.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if is_default and other:
            raise forms.ValidationError(f"{other} is the default workflow: untick it there first.")
        return is_default


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    """Review stages: each with its reviewers' group, approvals per output and outputs needed.
    A request keeps the workflow it was created with; removing a stage requests are in is
    refused."""

    form = WorkflowAdminForm
    list_display = ("name", "is_default", "stage_names", "revision_starts_at")
    inlines = [StageInline]

    @admin.display(description="Stages")
    def stage_names(self, workflow: Workflow) -> str:
        return " → ".join(stage.name for stage in workflow.stages.order_by("position"))
