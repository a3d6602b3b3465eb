"""Admins: keep the pipeline running."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from imagereview import actions


@staff_member_required
@require_POST
def resume_submissions(request: HttpRequest) -> HttpResponse:
    if actions.close_circuit(note="resumed by an admin", actor=request.user):
        messages.success(request, "Submissions resume; a new halt reopens the circuit.")
    back = request.headers.get("Referer", "")
    allowed = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
    return redirect(back if allowed else "home")
