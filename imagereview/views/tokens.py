"""Personal API tokens: a user's own list, a new token shown once, revoking one."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from imagereview.actions.tokens import issue_token, revoke_token
from imagereview.models import ApiToken


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, so you know which to revoke: \u201cnightly batch\u201d.",
        error_messages={"required": "Name the token after what will use it."},
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiToken.Scope.READ],
        error_messages={"required": "Choose at least one thing the token may do."},
    )


@login_required
@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    tokens = ApiToken.objects.filter(user=request.user)
    return render(request, "tokens/list.html", {"tokens": tokens, "form": ApiTokenForm()})


@login_required
@require_http_methods(["GET", "POST"])
def new_token(request: HttpRequest) -> HttpResponse:
    """Create a token; its text is on this one answer only, never stored or shown again."""
    form = ApiTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        token, text = issue_token(
            user=request.user, name=form.cleaned_data["name"], scopes=form.cleaned_data["scopes"]
        )
        response = render(request, "tokens/created.html", {"token": token, "text": text})
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "tokens/new.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    revoke_token(token_id=token.pk, user=request.user)
    messages.success(request, f"The token \u201c{token.name}\u201d is revoked: it no longer works.")
    return redirect("api_tokens")
