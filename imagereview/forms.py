from django import forms

from imagereview.models import (
    MAX_PROMPT_LENGTH,
    MAX_VARIANTS,
    AspectRatio,
    Decision,
    OutputFormat,
    Resolution,
)


class GenerationRequestForm(forms.Form):
    """A prompt-only request: the prompt, its parameters and how many variants."""

    prompt = forms.CharField(
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
        error_messages={
            "invalid_choice": f"Choose between 1 and {MAX_VARIANTS} variants.",
        },
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for name in ("aspect_ratio", "resolution", "output_format"):
            label = name.replace("_", " ")
            self.fields[name].error_messages["invalid_choice"] = (
                f"%(value)s is not a valid {label}; pick one from the list."
            )


class DecisionForm(forms.Form):
    verdict = forms.ChoiceField(choices=Decision.Verdict.choices)
    reason = forms.ChoiceField(choices=[("", "—"), *Decision.Reason.choices], required=False)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000
    )

    def clean(self) -> dict:
        data = super().clean()
        if data.get("verdict") == Decision.Verdict.REJECT and not data.get("reason"):
            self.add_error("reason", "Pick a reason for the reject.")
        return data
