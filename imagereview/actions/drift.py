"""Drift detectors: recent behaviour against its own baseline, each a `Finding` per subject.

A detector only reads; `alerts.check_drift` turns its findings into alerts. The recent window
is the last DRIFT_WINDOW seconds; the baseline is the DRIFT_BASELINE_DAYS before it. A finding
with `breached=None` had too little data to judge, and leaves its alert as it is.
"""

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q
from django.urls import reverse

from imagereview.models import (
    Alert,
    Asset,
    CallbackReceipt,
    Decision,
    Event,
    Generation,
    ImageRequest,
    ProviderAccount,
)
from imagereview.queries.spending import recent_daily_burn

G = Generation.State
# Most recent baseline items a median is taken over: enough to be steady, cheap to fetch.
BASELINE_LIMIT = 5000
GONE_STATUSES = ("HTTP 403", "HTTP 404", "HTTP 410")


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str = ""
    breached: bool | None = False
    title: str = ""
    detail: str = ""
    value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    severity: str = Alert.Severity.WARNING
    link: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}" if self.subject else self.kind


@dataclass(frozen=True)
class Windows:
    now: datetime
    start: datetime
    baseline_start: datetime

    @classmethod
    def ending(cls, now: datetime) -> "Windows":
        start = now - timedelta(seconds=settings.DRIFT_WINDOW)
        return cls(now, start, start - timedelta(days=settings.DRIFT_BASELINE_DAYS))

    def recent(self, field: str) -> Q:
        return Q(**{f"{field}__gte": self.start, f"{field}__lt": self.now})

    def before(self, field: str) -> Q:
        return Q(**{f"{field}__gte": self.baseline_start, f"{field}__lt": self.start})

    def since(self) -> str:
        return f"in the {_duration(settings.DRIFT_WINDOW)} before {self.now:%Y-%m-%d %H:%M} UTC"


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def admin_list(model: str, **filters: object) -> str:
    """The admin changelist of `model`, filtered: where an alert says to look."""
    url = reverse(f"admin:imagereview_{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _rate_breached(recent: float, baseline: float) -> tuple[bool, float]:
    threshold = max(baseline * settings.DRIFT_RATE_FACTOR, baseline + settings.DRIFT_RATE_MIN_RISE)
    return recent > threshold, threshold


def _rate_finding(
    kind: str,
    subject: str,
    what: str,
    recent: tuple[int, int],
    before: tuple[int, int],
    windows: Windows,
    link: str,
) -> Finding:
    """Judge a share (hits, total) of the window against the baseline's."""
    hits, total = recent
    if total < settings.DRIFT_MIN_SAMPLES:
        return Finding(kind, subject, breached=None)
    rate = hits / total
    base = before[0] / before[1] if before[1] else 0.0
    breached, threshold = _rate_breached(rate, base)
    return Finding(
        kind,
        subject,
        breached=breached,
        title=f"{what}{f' ({subject})' if subject else ''}: {rate:.0%} against {base:.0%}",
        detail=(
            f"{hits} of {total} {windows.since()}, against {before[0]} of {before[1]} "
            f"({base:.1%}) over the {settings.DRIFT_BASELINE_DAYS} days before; "
            f"alert above {threshold:.1%}."
        ),
        value=rate,
        baseline=base,
        threshold=threshold,
        link=link,
    )


def provider_latency(now: datetime) -> list[Finding]:
    """Median time from submitted to completed against the baseline's median."""
    w = Windows.ending(now)
    done = Generation.objects.filter(submitted_at__isnull=False, completed_at__isnull=False)

    def seconds(q: Q) -> list[float]:
        rows = done.filter(q).order_by("-completed_at").values_list("submitted_at", "completed_at")
        return [(end - start).total_seconds() for start, end in rows[:BASELINE_LIMIT]]

    recent, before = seconds(w.recent("completed_at")), seconds(w.before("completed_at"))
    if len(recent) < settings.DRIFT_MIN_SAMPLES or len(before) < settings.DRIFT_MIN_SAMPLES:
        return [Finding("provider_latency", breached=None)]
    median, base = statistics.median(recent), statistics.median(before)
    threshold = base * settings.DRIFT_LATENCY_FACTOR
    return [
        Finding(
            "provider_latency",
            breached=median > threshold,
            title=f"Provider latency: median {_duration(median)} against {_duration(base)}",
            detail=(
                f"Median submitted-to-completed time of {len(recent)} tasks {w.since()} is "
                f"{median:.1f} s, {median / base if base else 0:.1f}x the {base:.1f} s of the "
                f"{settings.DRIFT_BASELINE_DAYS} days before; alert above {threshold:.1f} s."
            ),
            value=median,
            baseline=base,
            threshold=threshold,
            link=admin_list("generation", state__exact=G.SUBMITTED),
        )
    ]


def provider_failures(now: datetime) -> list[Finding]:
    """Share of tasks the provider failed or never finished, against the baseline's.

    Counted from the audit log's moves out of submitted; a result we failed to store is a
    broken URL, not a provider failure.
    """
    w = Windows.ending(now)
    moves = Event.objects.filter(
        subject="generation", to_state__in=[G.SUCCEEDED, G.FAILED, G.TIMED_OUT]
    ).exclude(generation__failure_code="store")
    bad = Q(to_state__in=[G.FAILED, G.TIMED_OUT])

    def share(q: Q) -> tuple[int, int]:
        counts = moves.filter(q).aggregate(total=Count("id"), bad=Count("id", filter=bad))
        return counts["bad"], counts["total"]

    return [
        _rate_finding(
            "provider_failures",
            "",
            "Provider failure rate",
            share(w.recent("created_at")),
            share(w.before("created_at")),
            w,
            admin_list("generation", state__exact=G.FAILED),
        )
    ]


def callback_delivery(now: datetime) -> list[Finding]:
    """Share of completed tasks that an accepted callback told us of, under a floor."""
    if not settings.KIE_CALLBACKS:
        return [Finding("callback_delivery", breached=False)]
    w = Windows.ending(now)
    accepted = CallbackReceipt.objects.filter(
        task_id=OuterRef("provider_task_id"), outcome=CallbackReceipt.Outcome.ACCEPTED
    )
    completed = Generation.objects.filter(w.recent("completed_at"), provider_task_id__isnull=False)
    total, told = completed.count(), completed.filter(Exists(accepted)).count()
    if total < settings.DRIFT_MIN_SAMPLES:
        return [Finding("callback_delivery", breached=None)]
    rate, floor = told / total, settings.DRIFT_CALLBACK_FLOOR
    return [
        Finding(
            "callback_delivery",
            breached=rate < floor,
            title=f"Callbacks delivered for {rate:.0%} of completed tasks",
            detail=(
                f"{told} of {total} tasks completed {w.since()} had an accepted callback; "
                f"the rest were found by polling. Alert under {floor:.0%}: check the public "
                "URL, the proxy and the callback receipts refused."
            ),
            value=rate,
            threshold=floor,
            link=admin_list("callbackreceipt"),
        )
    ]


def _by_mode(rows: Iterable[dict], hit: str) -> dict[str, tuple[int, int]]:
    return {row["mode"]: (row[hit], row["total"]) for row in rows}


def acceptance_failures(now: datetime) -> list[Finding]:
    """Share of new outputs failing an acceptance check, by mode, against the baseline's."""
    w = Windows.ending(now)
    outputs = Asset.objects.filter(kind=Asset.Kind.OUTPUT)

    def shares(q: Q) -> dict[str, tuple[int, int]]:
        rows = (
            outputs.filter(q)
            .values(mode=F("request__mode"))
            .annotate(total=Count("id"), flagged=Count("id", filter=Q(flagged=True)))
        )
        return _by_mode(rows, "flagged")

    recent, before = shares(w.recent("created_at")), shares(w.before("created_at"))
    return [
        _rate_finding(
            "acceptance_failures",
            mode,
            "Acceptance-check failures",
            recent.get(mode, (0, 0)),
            before.get(mode, (0, 0)),
            w,
            admin_list("asset", kind__exact=Asset.Kind.OUTPUT, flagged__exact=1),
        )
        for mode in ImageRequest.Mode.values
    ]


def rejections(now: datetime) -> list[Finding]:
    """Share of decisions that reject, by mode, against the baseline's (undone ones left out)."""
    w = Windows.ending(now)
    counting = Decision.objects.filter(undone_at__isnull=True)
    reject = Q(verdict=Decision.Verdict.REJECT)

    def shares(q: Q) -> dict[str, tuple[int, int]]:
        rows = (
            counting.filter(q)
            .values(mode=F("output__request__mode"))
            .annotate(total=Count("id"), rejected=Count("id", filter=reject))
        )
        return _by_mode(rows, "rejected")

    recent, before = shares(w.recent("created_at")), shares(w.before("created_at"))
    return [
        _rate_finding(
            "rejections",
            mode,
            "Rejection rate",
            recent.get(mode, (0, 0)),
            before.get(mode, (0, 0)),
            w,
            admin_list("decision", verdict__exact=Decision.Verdict.REJECT),
        )
        for mode in ImageRequest.Mode.values
    ]


def tracking_gaps(now: datetime) -> list[Finding]:
    """Callbacks naming tasks no generation holds, creates left unanswered, duplicate tasks."""
    w = Windows.ending(now)
    held = Generation.objects.filter(provider_task_id=OuterRef("task_id"))
    orphans = (
        CallbackReceipt.objects.filter(
            w.recent("received_at"),
            outcome__in=[CallbackReceipt.Outcome.ACCEPTED, CallbackReceipt.Outcome.FOREIGN],
        )
        .exclude(task_id="")
        .exclude(Exists(held))
        .values("task_id")
        .distinct()
        .count()
    )
    grace = now - timedelta(seconds=settings.RECONCILE_SUBMITTING_GRACE)
    unanswered = Generation.objects.filter(state=G.SUBMITTING, updated_at__lt=grace).count()
    duplicates = Generation.objects.filter(w.recent("queued_at"), duplicate_of__isnull=False)
    gaps = orphans + unanswered + duplicates.count()
    threshold = settings.DRIFT_TRACKING_GAPS
    if unanswered:
        link = admin_list("generation", state__exact=G.SUBMITTING)
    elif orphans:
        link = admin_list("callbackreceipt")
    else:
        link = admin_list("generation", duplicate_of__isnull="False")
    return [
        Finding(
            "tracking_gaps",
            breached=gaps > threshold,
            title=f"Result tracking: {gaps} task{'s' if gaps != 1 else ''} not accounted for",
            detail=(
                f"{orphans} callback(s) {w.since()} named a task no generation holds; "
                f"{unanswered} create(s) unanswered for over "
                f"{_duration(settings.RECONCILE_SUBMITTING_GRACE)}; "
                f"{duplicates.count()} duplicate task(s) created {w.since()}. "
                f"Alert above {threshold}."
            ),
            value=gaps,
            threshold=threshold,
            link=link,
        )
    ]


def broken_urls(now: datetime) -> list[Finding]:
    """Result links that died before storing, and edit references that expired in use."""
    w = Windows.ending(now)
    gone = Q()
    for status in GONE_STATUSES:
        gone |= Q(failure_message__contains=status)
    dead_results = Generation.objects.filter(
        gone, w.recent("updated_at"), state=G.FAILED, failure_code="store"
    ).count()
    expired = Asset.objects.filter(
        request=OuterRef("request"),
        kind=Asset.Kind.REFERENCE,
        provider_url_expires_at__lte=OuterRef("updated_at"),
    )
    dead_references = (
        Generation.objects.filter(
            w.recent("updated_at"),
            state__in=[G.FAILED, G.TIMED_OUT],
            request__mode=ImageRequest.Mode.EDIT,
        )
        .filter(Exists(expired))
        .count()
    )
    broken = dead_results + dead_references
    threshold = settings.DRIFT_BROKEN_URLS
    return [
        Finding(
            "broken_urls",
            breached=broken > threshold,
            title=f"Broken asset URLs: {broken}",
            detail=(
                f"{dead_results} result link(s) answered 403/404/410 before they were stored "
                f"and {dead_references} edit(s) failed with a reference whose hosted copy had "
                f"expired, {w.since()}. Alert above {threshold}."
            ),
            value=broken,
            threshold=threshold,
            link=admin_list("generation", state__exact=G.FAILED),
        )
    ]


def provider_account(now: datetime) -> list[Finding]:
    """The circuit (submitting halted) and the credit balance of each provider account."""
    findings = []
    link = admin_list("provideraccount")
    for account in ProviderAccount.objects.all():
        opened = account.circuit_opened_at
        findings.append(
            Finding(
                "circuit_open",
                account.provider,
                breached=account.circuit_open,
                title=f"Submissions halted at {account.provider}: code {account.circuit_code}",
                detail=(
                    f"The circuit opened {f'at {opened:%Y-%m-%d %H:%M} UTC ' if opened else ''}"
                    f"on code {account.circuit_code}: {account.circuit_reason} Waiting work "
                    "stays queued until the account is fixed and submissions resume."
                ),
                severity=Alert.Severity.CRITICAL,
                link=link,
            )
        )
        findings.append(_credit_finding(account, now, link))
    return findings


def _credit_finding(account: ProviderAccount, now: datetime, link: str) -> Finding:
    if account.credits is None:
        return Finding("low_credits", account.provider, breached=None)
    credits = float(account.credits)
    burn = float(recent_daily_burn(now))
    days_left = credits / burn if burn else None
    floor = max(settings.KIE_PRICES.values()) * settings.DRIFT_LOW_CREDIT_IMAGES
    short = days_left is not None and days_left < settings.DRIFT_LOW_CREDIT_DAYS
    left = f"{days_left:.1f} days" if days_left is not None else "no recent burn"
    return Finding(
        "low_credits",
        account.provider,
        breached=short or credits < floor,
        title=f"Low credits at {account.provider}: {credits:g} left ({left})",
        detail=(
            f"{credits:g} credits, burning {burn:.1f} a day over the last 7 days: {left}. "
            f"Alert under {settings.DRIFT_LOW_CREDIT_DAYS:g} days or {floor:g} credits "
            f"({settings.DRIFT_LOW_CREDIT_IMAGES} images at the highest price)."
        ),
        value=days_left,
        threshold=settings.DRIFT_LOW_CREDIT_DAYS,
        severity=Alert.Severity.CRITICAL if credits < floor else Alert.Severity.WARNING,
        link=link,
    )
