"""Requesters: many prompt-only requests at once, from a CSV file."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from imagereview.batch import (
    BatchCheck,
    BatchConfirmForm,
    BatchUploadForm,
    column_guide,
    import_rows,
    parse_batch,
    parse_batch_text,
)


@login_required
@require_http_methods(["GET", "POST"])
def import_batch(request: HttpRequest) -> HttpResponse:
    """Check an uploaded CSV and show every row's result; create the rows once confirmed."""
    if request.method == "POST" and "csv" in request.POST:
        return _confirm(request)
    upload = BatchUploadForm(request.POST, request.FILES) if request.method == "POST" else None
    if upload is not None and upload.is_valid():
        return _page(request, BatchUploadForm(), parse_batch(upload.cleaned_data["file"]))
    return _page(request, upload or BatchUploadForm(), None)


def _confirm(request: HttpRequest) -> HttpResponse:
    # The text comes back from the browser, so it is checked again: what is created is what
    # passes now, whatever was shown before.
    confirm = BatchConfirmForm(request.POST)
    if not confirm.is_valid():
        return _page(request, BatchUploadForm(), None)
    check = parse_batch_text(confirm.cleaned_data["csv"])
    # With errors in the file, only the explicit choice creates anything.
    chosen = confirm.cleaned_data["only_valid"] or not check.has_errors
    if chosen and (rows := check.valid_rows):
        count = len(import_rows(requester=request.user, rows=rows))
        messages.success(
            request, f"Created {count} request{'s' if count != 1 else ''} from the CSV file."
        )
        return redirect("my_requests")
    return _page(request, BatchUploadForm(), check)


def _page(request: HttpRequest, upload: BatchUploadForm, check: BatchCheck | None) -> HttpResponse:
    context = {
        "form": upload,
        "check": check,
        "confirm_form": BatchConfirmForm(initial={"csv": check.text})
        if check and check.rows
        else None,
        "guide": column_guide(),
        "mode": "batch",
    }
    failed = upload.errors or (check and check.has_errors)
    return render(request, "requests/batch.html", context, status=400 if failed else 200)
