"""Alerts: raised once while a condition lasts, acknowledged by an admin, resolved when it ends.

An alert is keyed by (kind, subject), and the database holds at most one unresolved alert per
key: raising it again only refreshes its figures, so a condition that lasts for hours is one
alert, not one every check. Every change of state is written to the audit log.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from imagereview.actions import drift, integrity
from imagereview.actions.notifications import notify_alert
from imagereview.models import Alert, Event

log = logging.getLogger(__name__)

A = Alert.State
FIGURES = ("title", "detail", "value", "baseline", "threshold", "severity", "link")
DETECTORS: list[Callable[[datetime], list[drift.Finding]]] = [
    drift.provider_latency,
    drift.provider_failures,
    drift.callback_delivery,
    drift.acceptance_failures,
    drift.rejections,
    drift.tracking_gaps,
    drift.broken_urls,
    integrity.storage_mismatch,
    drift.provider_account,
]


def _unresolved(kind: str, subject: str) -> Alert | None:
    return (
        Alert.objects.select_for_update()
        .filter(kind=kind, subject=subject)
        .exclude(state=A.RESOLVED)
        .first()
    )


def _audit(alert: Alert, before: str, *, actor: AbstractBaseUser | None, source: str) -> None:
    Event.objects.create(
        subject="alert",
        from_state=before,
        to_state=alert.state,
        actor=actor,
        source=source,
        note=f"alert {alert.pk} {alert.kind}"
        + (f" ({alert.subject})" if alert.subject else "")
        + f": {alert.title}",
    )


def raise_alert(
    *,
    kind: str,
    subject: str = "",
    title: str,
    detail: str,
    value: float | None = None,
    baseline: float | None = None,
    threshold: float | None = None,
    severity: str = Alert.Severity.WARNING,
    link: str = "",
) -> Alert:
    """Open an alert for (kind, subject), or refresh the figures of the one already unresolved."""
    return _raise(
        kind=kind,
        subject=subject,
        title=title,
        detail=detail,
        value=value,
        baseline=baseline,
        threshold=threshold,
        severity=severity,
        link=link,
    )[0]


def _raise(*, kind: str, subject: str, **figures: object) -> tuple[Alert, bool]:
    """The alert for (kind, subject), and whether this call opened it."""
    now = timezone.now()
    figures["title"] = str(figures["title"])[:200]
    figures["link"] = str(figures["link"])[:500]
    with transaction.atomic():
        alert = _unresolved(kind, subject)
        if alert is None:
            try:
                # A savepoint: another process may open the same alert between our read and
                # this insert, and the unique constraint then makes us refresh theirs.
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=kind, subject=subject, last_seen_at=now, **figures
                    )
            except IntegrityError:
                alert = _unresolved(kind, subject)
                if alert is None:
                    raise
            else:
                _audit(alert, "", actor=None, source="monitor")
                transaction.on_commit(partial(notify_alert, alert, opened=True))
                log.warning("alert opened: %s", alert)
                return alert, True
        for name, figure in figures.items():
            setattr(alert, name, figure)
        alert.last_seen_at = now
        alert.save(update_fields=[*FIGURES, "last_seen_at"])
    return alert, False


def resolve_alert(*, kind: str, subject: str = "") -> Alert | None:
    """Resolve the unresolved alert for (kind, subject), if there is one."""
    with transaction.atomic():
        alert = _unresolved(kind, subject)
        if alert is None:
            return None
        before = alert.state
        alert.state = A.RESOLVED
        alert.resolved_at = timezone.now()
        alert.save(update_fields=["state", "resolved_at"])
        _audit(alert, before, actor=None, source="monitor")
        transaction.on_commit(partial(notify_alert, alert, opened=False))
    log.info("alert resolved: %s", alert)
    return alert


def acknowledge_alert(*, alert_id: int, actor: AbstractBaseUser | None) -> Alert:
    """Mark an open alert as seen by `actor`; an acknowledged or resolved one is left as it is."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise Alert.DoesNotExist(f"no alert {alert_id}")
        if alert.state != A.OPEN:
            return alert
        alert.state = A.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by"])
        _audit(alert, A.OPEN, actor=actor, source="admin")
    return alert


def apply_finding(finding: drift.Finding) -> str:
    """Raise or resolve the alert a finding speaks of; return what was done."""
    if finding.breached is None:
        return "skipped"
    if not finding.breached:
        return "resolved" if resolve_alert(kind=finding.kind, subject=finding.subject) else "ok"
    _, opened = _raise(
        kind=finding.kind,
        subject=finding.subject,
        title=finding.title,
        detail=finding.detail,
        value=finding.value,
        baseline=finding.baseline,
        threshold=finding.threshold,
        severity=finding.severity,
        link=finding.link,
    )
    return "raised" if opened else "ongoing"


def check_drift(now: datetime | None = None) -> dict[str, str]:
    """Run every detector and raise or resolve its alerts; return what became of each.

    The keys are `kind` or `kind:subject`; the values are "raised", "ongoing", "resolved",
    "ok" (nothing wrong, nothing open), "skipped" (too little data to judge) or "error".
    """
    now = now or timezone.now()
    outcome: dict[str, str] = {}
    for detector in DETECTORS:
        try:
            findings = detector(now)
        except Exception:
            # One broken detector must not silence the others.
            log.exception("drift detector %s failed", detector.__name__)
            outcome[detector.__name__] = "error"
            continue
        for finding in findings:
            outcome[finding.key] = apply_finding(finding)
    return outcome
