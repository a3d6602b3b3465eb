from collections.abc import Sequence
from datetime import date, datetime, time

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import pluralize
from django.utils import timezone

from imagereview import media
from imagereview.actions.webhooks import EVENT_TYPES
from imagereview.models import (
    MAX_PROMPT_LENGTH,
    MAX_VARIANTS,
    Annotation,
    AspectRatio,
    Asset,
    Decision,
    ImageRequest,
    NotificationPreference,
    OutputFormat,
    Resolution,
    WebhookEndpoint,
    Workflow,
)
from imagereview.providers.downloads import UnsafeURL
from imagereview.providers.webhooks import check_endpoint_url
from imagereview.queries.outcomes import PUBLISHED, STATUS_WORDS
from imagereview.queries.stages import stage_choices

# Which acceptance checks may reject an output on their own, per mode. An edit may also be
# rejected for coming back as its reference unchanged: a near-copy measures under 1 of 255
# where real edits measure over 20. Its "resemblance" check only flags for a reviewer: edits
# and unrelated pictures overlap in similarity (0.46 against 0.47, see acceptance.py).
CHECKS_BY_MODE = {
    "generate": ["format", "aspect_ratio", "resolution"],
    "edit": ["format", "aspect_ratio", "resolution", "reference"],
}
MAX_REQUIRED_APPROVALS = 5


def _policy_field(label: str, help_text: str, *, upto: int, unit: str) -> forms.Field:
    """A review-policy count from 1 to `upto`; omitted, it is 1."""
    return forms.TypedChoiceField(
        label=label,
        help_text=help_text,
        required=False,
        empty_value=1,
        choices=[(n, str(n)) for n in range(1, upto + 1)],
        coerce=int,
        initial=1,
        error_messages={"invalid_choice": f"Choose between 1 and {upto} {unit}."},
    )


def error_text(form: forms.Form) -> str:
    """Every message of an invalid form as one text, for a page that shows a single error."""
    return " ".join(message for errors in form.errors.values() for message in errors)


class PromptField(forms.CharField):
    """A prompt: its length is checked on the server, never cut short by the browser.

    A `maxlength` attribute makes the browser drop whatever a paste brings past it, without
    a word; `data-max-length` lets static/js/prompt_length.js count and warn instead.
    """

    def widget_attrs(self, widget: forms.Widget) -> dict:
        attrs = super().widget_attrs(widget)
        if attrs.pop("maxlength", None):
            attrs["data-max-length"] = str(self.max_length)
        return attrs


def _future_due(value: datetime | None) -> datetime | None:
    if value is not None and value <= timezone.now():
        raise ValidationError(
            "The due date %(due)s has passed: choose a moment in the future, or leave it empty.",
            params={"due": timezone.localtime(value).strftime("%Y-%m-%d %H:%M")},
        )
    return value


class DueField(forms.DateTimeField):
    """When the request is due: an ISO date (the end of that day) or date and time, in the
    site's time zone unless it names its own offset."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    default_error_messages = {
        "invalid": "Enter the due date as YYYY-MM-DD or YYYY-MM-DD HH:MM.",
    }

    def to_python(self, value: object) -> datetime | None:
        if isinstance(value, str) and len(value.strip()) == len("2026-01-31"):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                raise ValidationError(self.error_messages["invalid"], code="invalid") from None
            return timezone.make_aware(datetime.combine(day, time(23, 59)))
        return super().to_python(value)


PRIORITY_NAMES = {p.name.lower(): p.value for p in ImageRequest.Priority}


def _due_field() -> DueField:
    return DueField(
        label="Due",
        required=False,
        help_text="Optional: when the review should be done.",
        validators=[_future_due],
    )


def _priority_field() -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        label="Priority",
        required=False,
        choices=[(p.name.lower(), p.label) for p in ImageRequest.Priority],
        coerce=PRIORITY_NAMES.get,
        empty_value=ImageRequest.Priority.NORMAL,
        initial="normal",
        error_messages={"invalid_choice": "Choose a priority: low, normal, high or urgent."},
    )


class GenerationRequestForm(forms.Form):
    """A prompt-only request: the prompt, its parameters and how many variants."""

    mode = "generate"

    prompt = PromptField(
        widget=forms.Textarea(attrs={"rows": 5, "placeholder": "Describe the image you want"}),
        max_length=MAX_PROMPT_LENGTH,
        error_messages={
            "required": "Enter a prompt: describe the image you want.",
            "max_length": f"The prompt is too long: at most {MAX_PROMPT_LENGTH:,} characters "
            "(it has %(show_value)s).",
        },
    )
    aspect_ratio = forms.ChoiceField(choices=AspectRatio.choices, initial=AspectRatio.SQUARE)
    resolution = forms.ChoiceField(choices=Resolution.choices, initial=Resolution.R1K)
    output_format = forms.ChoiceField(choices=OutputFormat.choices, initial=OutputFormat.PNG)
    variants = forms.TypedChoiceField(
        choices=[(n, str(n)) for n in range(1, MAX_VARIANTS + 1)],
        coerce=int,
        initial=1,
        error_messages={"invalid_choice": f"Choose between 1 and {MAX_VARIANTS} variants."},
    )
    required_approvals = _policy_field(
        "Approvals per output",
        "From distinct reviewers, before an output counts as approved.",
        upto=MAX_REQUIRED_APPROVALS,
        unit="approvals per output",
    )
    approval_quota = _policy_field(
        "Approved outputs needed",
        "How many approved variants approve the request.",
        upto=MAX_VARIANTS,
        unit="approved outputs",
    )
    auto_reject = forms.BooleanField(
        required=False,
        label="Reject outputs that fail an acceptance check without asking a reviewer",
        help_text="The checks of format, aspect ratio and resolution.",
    )
    auto_publish = forms.TypedChoiceField(
        label="Publishing",
        required=False,
        choices=[
            ("", "As the site is set up"),
            ("yes", "Publish each output as soon as it is approved"),
            ("no", "Publish approved outputs by hand"),
        ],
        coerce=lambda value: value == "yes",
        empty_value=None,
        initial="",
        error_messages={"invalid_choice": "Choose yes, no, or leave publishing as it is set up."},
    )
    due_at = _due_field()
    priority = _priority_field()
    workflow = forms.ModelChoiceField(
        queryset=Workflow.objects.all(),
        to_field_name="name",
        required=False,
        initial="",
        empty_label="The default workflow, if one is set",
        label="Review stages",
        help_text="The workflow's stages review the request in order, each by its own group.",
        error_messages={"invalid_choice": "There is no workflow named %(value)s."},
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for name in ("aspect_ratio", "resolution", "output_format"):
            self.fields[name].error_messages["invalid_choice"] = (
                f"%(value)s is not a valid {name.replace('_', ' ')}; pick one from the list."
            )

    def clean(self) -> dict:
        data = super().clean()
        variants, quota = data.get("variants"), data.get("approval_quota")
        if variants and quota and quota > variants:
            self.add_error(
                "approval_quota",
                f"Need at most {variants} approved output{pluralize(variants)}: only "
                f"{variants} variant{pluralize(variants)} {'is' if variants == 1 else 'are'} "
                "asked for.",
            )
        return data

    def request_fields(self) -> dict:
        """The cleaned values as `create_request` takes them."""
        data = dict(self.cleaned_data)
        data["acceptance_rules"] = {
            "auto_reject": CHECKS_BY_MODE[self.mode] if data.pop("auto_reject") else []
        }
        return data


def reference_problem(output: Asset) -> str | None:
    """Why an output cannot go to the provider as a reference, if it cannot.

    Outputs are stored under looser limits than references (up to 40 MB, 80 MP).
    """
    name = f"Output {output.pk} of request #{output.request_id}"
    with output.file.open("rb") as stored:
        try:
            media.validate_reference(stored, name=name)
        except media.BadImage as error:
            return f"{error} Download it, make it smaller and upload that copy instead."
    return None


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class ReferencesField(forms.FileField):
    """Several reference images in one input."""

    widget = MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"})

    def clean(self, data: object, initial: object = None) -> list[UploadedFile]:
        if isinstance(data, list | tuple):
            return [super(ReferencesField, self).clean(item, initial) for item in data if item]
        return [super().clean(data, initial)] if data else []


class EditRequestForm(GenerationRequestForm):
    """An edit: the prompt and parameters plus 1 to 8 reference images, the first leading."""

    mode = "edit"

    references = ReferencesField(
        required=False,
        label="Reference images",
        help_text="JPEG, PNG or WebP, at most 30 MB each; the first one is edited.",
    )

    field_order = ["prompt", "references"]

    def __init__(
        self,
        *args: object,
        source_output: Asset | None = None,
        source_outputs: Sequence[Asset] = (),
        too_large: Sequence[str] = (),
        **kwargs: object,
    ) -> None:
        """`source_output` is the output an edit page starts from; `source_outputs`, the
        earlier outputs an API call names as references. They count and are checked as
        references, before the uploaded files. `too_large` names uploads dropped on the way
        in for their size (bodylimits.too_large_uploads)."""
        self.too_large = list(too_large)
        self.source_output = source_output
        self.source_outputs = [source_output] if source_output else list(source_outputs)
        super().__init__(*args, **kwargs)
        self.fields["aspect_ratio"].initial = AspectRatio.AUTO
        self.fields["auto_reject"].help_text = (
            "The checks of format, aspect ratio and resolution, and an output that is its "
            "reference unchanged. Whether it resembles the reference is left to a reviewer."
        )
        if source_output:
            references = self.fields["references"]
            references.help_text = "JPEG, PNG or WebP, at most 30 MB each; they guide the edit."

    def clean_references(self) -> list[UploadedFile]:
        files = self.cleaned_data["references"]
        if self.too_large:
            limit = media.MAX_REFERENCE_BYTES // 1024 // 1024
            raise ValidationError(
                [f"{name}: the file is over the limit of {limit} MB." for name in self.too_large]
            )
        given = len(files) + len(self.source_outputs)
        if given == 0:
            raise ValidationError("Add at least one reference image to edit.")
        if given > media.MAX_REFERENCES:
            raise ValidationError(
                f"At most {media.MAX_REFERENCES} reference images (you gave {given})."
            )
        errors = []
        for output in self.source_outputs:
            if problem := reference_problem(output):
                errors.append(problem)
        for upload in files:
            try:
                media.validate_reference(upload, name=upload.name)
            except media.BadImage as error:
                errors.append(str(error))
        if errors:
            raise ValidationError(errors)
        return files

    def request_fields(self) -> dict:
        data = super().request_fields()
        data.pop("references")
        return data


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(
        choices=[(Decision.Verdict.APPROVE, "Approve"), (Decision.Verdict.REJECT, "Reject")]
    )
    reason = forms.ChoiceField(choices=[("", "—"), *Decision.Reason.choices], required=False)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000
    )
    # The latest decision on the output when the reviewer looked (0: none), to spot conflicts.
    seen_decision_id = forms.IntegerField(required=False, min_value=0)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("verdict") == Decision.Verdict.REJECT and not data.get("reason"):
            self.add_error("reason", "Pick a reason for the reject.")
        if data.get("verdict") == Decision.Verdict.APPROVE:
            data["reason"] = ""  # a reason left selected explains nothing about an approval
        return data


class BulkDecisionForm(DecisionForm):
    requests = forms.TypedMultipleChoiceField(
        coerce=int,
        error_messages={"required": "Select at least one item first."},
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Any id may be posted; unknown ones simply match nothing.
        self.fields["requests"].valid_value = lambda value: str(value).isdigit()


class ChangesForm(forms.Form):
    """Request changes: the revised prompt and parameters, or an edit of this output."""

    prompt = GenerationRequestForm.base_fields["prompt"]
    aspect_ratio = GenerationRequestForm.base_fields["aspect_ratio"]
    resolution = GenerationRequestForm.base_fields["resolution"]
    output_format = GenerationRequestForm.base_fields["output_format"]
    variants = GenerationRequestForm.base_fields["variants"]
    edit_from_output = forms.BooleanField(
        required=False, label="Start the revision as an edit of this output"
    )
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000
    )
    # The notes on the output the revised prompt was filled from ("3,5"), set by "Fill from
    # notes"; the revision is recorded as answering them.
    annotation_ids = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)
    guide_image = forms.BooleanField(
        required=False, initial=True, label="Send a guide image with the notes drawn"
    )

    def __init__(self, *args: object, output: Asset, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.output = output

    def clean_annotation_ids(self) -> list[int]:
        value = self.cleaned_data["annotation_ids"]
        try:
            return sorted({int(part) for part in value.split(",") if part.strip()})
        except ValueError:
            raise ValidationError("The notes to answer are not a list of note numbers.") from None

    def clean_edit_from_output(self) -> bool:
        edit = self.cleaned_data["edit_from_output"]
        if edit and (problem := reference_problem(self.output)):
            raise ValidationError(problem)
        return edit

    @staticmethod
    def initial_for(image_request: object) -> dict:
        names = ("prompt", "aspect_ratio", "resolution", "output_format", "variants")
        return {name: getattr(image_request, name) for name in names}

    def request_fields(self) -> dict:
        return dict(self.cleaned_data)


class QueueFilterForm(forms.Form):
    mode = forms.ChoiceField(
        choices=[("", "Any mode"), ("generate", "Generate"), ("edit", "Edit")], required=False
    )
    requester = forms.CharField(required=False, max_length=150)
    flagged = forms.BooleanField(required=False, label="Flagged by a check")
    age = forms.ChoiceField(
        choices=[
            ("", "Any age"),
            ("hour", "Last hour"),
            ("day", "Last 24 hours"),
            ("week", "Last 7 days"),
            ("older", "Older than a day"),
        ],
        required=False,
    )
    stage = forms.ChoiceField(
        choices=lambda: stage_choices() or [("", "Any stage")], required=False
    )
    sort = forms.ChoiceField(
        choices=[
            ("oldest", "Oldest first"),
            ("newest", "Newest first"),
            ("due", "Due soonest"),
            ("priority", "Highest priority"),
        ],
        required=False,
    )
    overdue = forms.BooleanField(required=False, label="Overdue")
    priority = forms.ChoiceField(
        choices=[
            ("", "Any priority"),
            ("urgent", "Urgent"),
            ("high", "High or urgent"),
            ("normal", "Normal or higher"),
        ],
        required=False,
    )
    after = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)


class PublishForm(forms.Form):
    """Publish an approved output: to the default target unless another is named."""

    target = forms.CharField(required=False, max_length=32)

    def clean_target(self) -> str:
        from django.conf import settings

        target = self.cleaned_data["target"] or settings.PUBLISH_DEFAULT_TARGET
        if target not in settings.PUBLISH_TARGETS:
            raise ValidationError(
                f"Choose a publish target: {', '.join(settings.PUBLISH_TARGETS)}."
            )
        return target


class RetractForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        error_messages={"required": "Say why the publication is retracted."},
    )


class WebhookEndpointForm(forms.ModelForm):
    """Where events go and which of them; the secret is made, and rotated, by the app."""

    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=list(EVENT_TYPES.items()),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Events",
        help_text="None ticked: every event, including kinds added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_types", "active"]
        labels = {"active": "Active: send events to this endpoint"}
        help_texts = {"description": "Who receives these events, for the list of endpoints."}

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            check_endpoint_url(url)
        except UnsafeURL as error:
            raise ValidationError(f"This URL cannot receive webhooks: {error}.") from error
        return url


class LibraryFilterForm(forms.Form):
    """The library's filters; each one left empty matches everything."""

    q = forms.CharField(required=False, max_length=200, label="Search prompts")
    state = forms.ChoiceField(
        choices=[("", "Any state"), *STATUS_WORDS.items(), (PUBLISHED, "Published")],
        required=False,
    )
    mode = forms.ChoiceField(choices=[("", "Any mode"), *ImageRequest.Mode.choices], required=False)
    requester = forms.CharField(required=False, max_length=150)
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    published = forms.ChoiceField(
        choices=[("", "Published or not"), ("yes", "Published"), ("no", "Not published")],
        required=False,
    )
    after = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and start > end:
            self.add_error("created_to", "The end date is before the start date.")
        return data


class LibrarySelectionForm(forms.Form):
    """Requests ticked in the library, and what an export of them takes."""

    requests = forms.TypedMultipleChoiceField(coerce=int, required=False)
    include = forms.ChoiceField(
        choices=[("approved", "Approved outputs"), (PUBLISHED, "Published outputs only")],
        required=False,
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # Any id may be posted; ids the person may not see simply match nothing.
        self.fields["requests"].valid_value = lambda value: str(value).isdigit()

    def clean_include(self) -> str:
        return self.cleaned_data["include"] or "approved"


class NotificationPreferenceForm(forms.ModelForm):
    """What a user wants to be told: only the choices that apply to their roles are shown."""

    class Meta:
        model = NotificationPreference
        fields = ["review_digest", "email_decisions", "email_alerts"]
        labels = {
            "review_digest": "Digest of what awaits review",
            "email_decisions": "Email me when my requests are decided, revised or fail",
            "email_alerts": "Email me when an alert opens or resolves",
        }

    def __init__(self, *args: object, reviewer: bool, staff: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if not reviewer:
            del self.fields["review_digest"]
        if not staff:
            del self.fields["email_alerts"]


class AnnotationForm(forms.Form):
    """A note on an output: a pin or a box in 0-1 coordinates of the image, and a comment."""

    shape = forms.ChoiceField(choices=Annotation.Shape.choices)
    x = forms.FloatField(min_value=0, max_value=1)
    y = forms.FloatField(min_value=0, max_value=1)
    width = forms.FloatField(min_value=0, max_value=1, required=False)
    height = forms.FloatField(min_value=0, max_value=1, required=False)
    # Its length is the action's to check, with a message that says by how much.
    comment = forms.CharField(error_messages={"required": "Write what the note is about."})

    def clean(self) -> dict:
        data = super().clean()
        for name in ("width", "height"):
            if data.get(name) is None:
                data[name] = 0.0
        return data
