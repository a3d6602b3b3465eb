"""Admins: keep the pipeline running, and see what it costs and where it hurts."""

import csv
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from functools import partial

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from imagereview import actions, charts
from imagereview.actions.figures import refresh as figures_refresh
from imagereview.actions.reconcile import ask_refresh, cancel_generation, replace_generation
from imagereview.models import Alert
from imagereview.publishing import export
from imagereview.queries import operations, spending
from imagereview.roles import operations_watcher_required


@staff_member_required
@require_POST
def resume_submissions(request: HttpRequest) -> HttpResponse:
    if actions.close_circuit(note="resumed by an admin", actor=request.user):
        messages.success(request, "Submissions resume; a new halt reopens the circuit.")
    back = request.headers.get("Referer", "")
    allowed = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
    return redirect(back if allowed else "home")


PERIOD_CHOICES = (("today", "Today"), ("7d", "7 days"), ("30d", "30 days"), ("custom", "Custom"))
GENERATION_ACTIONS = {
    "refresh": (ask_refresh, "Refresh asked for generation {}."),
    "retry": (replace_generation, "Generation {} is retried."),
    "cancel": (cancel_generation, "Generation {} is cancelled."),
}


def _period(params: Mapping[str, str]) -> operations.Period:
    """The period the page asks for: a named one, or custom dates (the end day included)."""
    start, end = _date(params.get("start", "")), _date(params.get("end", ""))
    as_time = partial(datetime.combine, time=time.min, tzinfo=timezone.get_current_timezone())
    return operations.period_for(
        params.get("period") or ("custom" if start and end else "7d"),
        start=as_time(start) if start else None,
        end=as_time(end + timedelta(days=1)) if end else None,
    )


def _date(value: str) -> date | None:
    try:
        return parse_date(value)
    except ValueError:
        return None


def _charts(period: operations.Period, figures: dict) -> dict[str, object]:
    labels = [day.strftime("%m-%d") for day in period.days]
    burn = dict(figures["cost"].burn_by_day)
    codes = sorted({code for _, code, _ in figures["failures"].by_day})
    failed = {(day, code): n for day, code, n in figures["failures"].by_day}
    latency = {day: p50 for day, p50, _ in figures["latency"]}
    return {
        "burn": charts.bar_chart(
            labels,
            [charts.Series("credits", [float(burn.get(day, 0)) for day in period.days])],
            title="Credits burned per day",
        ),
        "failures": charts.bar_chart(
            labels,
            [
                charts.Series(code or "?", [failed.get((day, code), 0) for day in period.days])
                for code in codes
            ],
            title="Failures per day by code",
        ),
        "latency": charts.line_chart(
            labels,
            [charts.Series("p50 s", [latency.get(day) for day in period.days])],
            title="Provider latency (submitted to completed), p50 seconds per day",
        ),
        "failure_codes": codes,
        "failure_rows": [
            (day, [failed.get((day, code), 0) for code in codes]) for day in period.days
        ],
    }


@operations_watcher_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    period = _period(request.GET)
    figures_refresh()
    figures = {
        "volume": operations.volume(period),
        "stuck": operations.stuck_work(),
        "failures": operations.failures(period),
        "callbacks": operations.callbacks(period),
        "latency": operations.latency_by_day(period),
        "cost": spending.cost(period),
        "review": spending.review(period),
    }
    context = {
        **figures,
        "circuit": operations.circuit_openings(period),
        "period": period,
        "period_choices": PERIOD_CHOICES,
        "query": urlencode(
            {k: v for k, v in request.GET.items() if k in ("period", "start", "end")}
        ),
        "charts": _charts(period, figures),
        "alerts": Alert.objects.exclude(state=Alert.State.RESOLVED)[:20],
        "own_stores": ("download_refused", "download_failed", "decode_failed"),
        "currency": settings.CREDIT_CURRENCY,
        "review_hours": settings.OPS_STUCK_REVIEW_HOURS,
    }
    template = "operations/dashboard.html"
    if request.htmx:
        template += "#figures"
    return render(request, template, context)


@staff_member_required
@require_POST
def generation_action(request: HttpRequest, generation_id: int, action: str) -> HttpResponse:
    if action not in GENERATION_ACTIONS:
        raise Http404("No such action.")
    act, done = GENERATION_ACTIONS[action]
    if act(generation_id=generation_id, actor=request.user):
        messages.success(request, done.format(generation_id))
    else:
        messages.info(request, f"Generation {generation_id} had moved on; nothing was done.")
    back = reverse("operations")
    if request.htmx:
        return HttpResponseClientRedirect(back)
    return redirect(back)


@operations_watcher_required
@require_GET
def cost_csv(request: HttpRequest) -> HttpResponse:
    """The cost report of the period as CSV, every text cell kept from running as a formula."""
    period = _period(request.GET)
    figures_refresh()
    report = spending.cost(period)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="cost.csv"'
    writer = csv.writer(response)
    writer.writerow(["period", period.start.isoformat(), period.end.isoformat()])
    writer.writerow(
        [
            "group",
            "key",
            "credits",
            "estimated credits",
            f"money ({settings.CREDIT_CURRENCY})",
            "approved outputs",
            "credits per approved",
            f"money per approved ({settings.CREDIT_CURRENCY})",
        ]
    )
    lines = [("all", report.total)] + [
        (group, line) for group, group_lines in report.groups.items() for line in group_lines
    ]
    for group, line in lines:
        writer.writerow(
            [
                export.neutralise(cell)
                for cell in (
                    group,
                    line.key,
                    f"{line.credits:.2f}",
                    f"{line.estimated:.2f}",
                    line.money,
                    line.approved,
                    line.per_approved if line.per_approved is not None else "",
                    line.money_per_approved if line.money_per_approved is not None else "",
                )
            ]
        )
    return response
