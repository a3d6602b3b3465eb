"""Guest links: a share of some requests with someone who has no account.

A link's URL carries a token signed with the site's key (salt "guest-link") of the link's id
and secret: a tampered token is refused before the database is asked, and revoking the row
or letting it expire ends every copy of the URL at once. What a guest does is recorded under
the link and the name they give; a guest's verdict cannot be undone, only changed while the
request is still in review.
"""

import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from imagereview.actions import annotations, review
from imagereview.models import Annotation, Asset, Decision, Event, GuestLink, ImageRequest
from imagereview.roles import is_reviewer
from imagereview.transitions import lock
from imagereview.workflows import may_decide_in, stage_rule

log = logging.getLogger(__name__)

SALT = "guest-link"
DEFAULT_LIFETIME = timedelta(days=7)
V = Decision.Verdict
INVALID = "This link is not valid: check that it was copied whole."


class ShareRefused(Exception):
    """A share or revocation the rules do not allow; the message is for the reviewer."""


@dataclass
class LinkEnded(Exception):
    """A link that does not open: forged ("invalid", 404), "revoked" or "expired" (410)."""

    kind: str
    message: str
    status: int

    def __str__(self) -> str:
        return self.message


def max_lifetime() -> timedelta:
    return timedelta(days=settings.GUEST_LINK_MAX_DAYS)


def shareable(image_request: ImageRequest, reviewer: AbstractBaseUser) -> bool:
    """Whether the reviewer could review the request, and so may share it."""
    return is_reviewer(reviewer) and not review.reviews_own_request(image_request, reviewer)


def share_requests(
    *,
    requests: Iterable[ImageRequest],
    created_by: AbstractBaseUser,
    label: str = "",
    expires_in: timedelta = DEFAULT_LIFETIME,
    may_comment: bool = True,
    may_decide: bool = False,
) -> GuestLink:
    """Make a link that shows `requests` to whoever holds it, until it expires or is revoked."""
    requests = list(requests)
    if not is_reviewer(created_by):
        raise ShareRefused("Only reviewers can share requests with guests.")
    if not requests:
        raise ShareRefused("Choose at least one request to share.")
    if not timedelta(hours=1) <= expires_in <= max_lifetime():
        raise ShareRefused(f"A link lives between an hour and {settings.GUEST_LINK_MAX_DAYS} days.")
    own = [f"#{r.pk}" for r in requests if not shareable(r, created_by)]
    if own:
        raise ShareRefused(
            f"You asked for {', '.join(own)}, so you may not review it, nor share it for review."
        )
    # A guest decides in the request's current stage, on the authority of who shared it.
    elsewhere = [r for r in requests if not may_decide_in(r.stage, created_by)]
    if may_decide and elsewhere:
        raise ShareRefused(
            f"#{elsewhere[0].pk} is in the {elsewhere[0].stage.name} stage, which only its "
            "reviewers decide: share it without “may approve or reject”, or ask one of them."
        )
    with transaction.atomic():
        link = GuestLink.objects.create(
            label=label,
            created_by=created_by,
            expires_at=timezone.now() + expires_in,
            may_comment=may_comment,
            may_decide=may_decide,
        )
        link.requests.set(requests)
        Event.objects.bulk_create(
            Event(
                request=r,
                subject="guest_link",
                to_state="shared",
                actor=created_by,
                source="guest link",
                note=f"link #{link.pk} {link.label!r}, {_rights(link)}, "
                f"until {link.expires_at:%Y-%m-%d %H:%M} UTC",
            )
            for r in requests
        )
    log.info("%s shared %s with guest link %s", created_by, [r.pk for r in requests], link.pk)
    return link


def _rights(link: GuestLink) -> str:
    rights = ["view"] + ["comment"] * link.may_comment + ["decide"] * link.may_decide
    return ", ".join(rights)


def revoke(*, link: GuestLink, by: AbstractBaseUser) -> GuestLink:
    """End the link at once; revoking twice keeps the first time."""
    if not is_reviewer(by):
        raise ShareRefused("Only reviewers can revoke guest links.")
    with transaction.atomic():
        link = lock(GuestLink, link.pk)
        if link.revoked_at is None:
            link.revoked_at = timezone.now()
            link.revoked_by = by
            link.save(update_fields=["revoked_at", "revoked_by"])
            Event.objects.bulk_create(
                Event(
                    request=r,
                    subject="guest_link",
                    from_state="shared",
                    to_state="revoked",
                    actor=by,
                    source="guest link",
                    note=f"link #{link.pk} {link.label!r}",
                )
                for r in link.requests.all()
            )
    return link


def guest_token(link: GuestLink) -> str:
    """The link's token: the same for the link's whole life, so it has one URL."""
    return signing.Signer(salt=SALT).sign_object([link.pk, link.secret], compress=True)


def guest_url(link: GuestLink, *, base: str = "") -> str:
    """The link's absolute URL, under `base` (the site's public address by default)."""
    path = reverse("guest_home", args=[guest_token(link)])
    return (base or settings.PUBLIC_BASE_URL).rstrip("/") + path


def open_link(token: str, *, count: bool = True) -> GuestLink:
    """The live link `token` stands for, its use counted; else LinkEnded saying why."""
    try:
        pk, secret = signing.Signer(salt=SALT).unsign_object(token)
    except (signing.BadSignature, TypeError, ValueError) as bad:
        raise LinkEnded("invalid", INVALID, 404) from bad
    link = GuestLink.objects.filter(pk=pk).first() if isinstance(pk, int) else None
    if link is None or not hmac.compare_digest(str(secret).encode(), link.secret.encode()):
        raise LinkEnded("invalid", INVALID, 404)
    if link.revoked_at is not None:
        raise LinkEnded(
            "revoked",
            f"This link was revoked on {link.revoked_at:%Y-%m-%d at %H:%M} UTC. "
            "Ask the person who shared it for a new one.",
            410,
        )
    if link.expires_at <= timezone.now():
        raise LinkEnded(
            "expired",
            f"This link expired on {link.expires_at:%Y-%m-%d at %H:%M} UTC. "
            "Ask the person who shared it for a new one.",
            410,
        )
    if count:
        GuestLink.objects.filter(pk=link.pk).update(uses=F("uses") + 1, last_used_at=timezone.now())
    return link


def shared_requests(link: GuestLink):
    """The requests the link shows, oldest first."""
    return link.requests.order_by("created_at", "id")


def shared_output(link: GuestLink, output_id: int) -> Asset | None:
    """One output of a shared request, or None: other requests' outputs do not exist here."""
    return (
        Asset.objects.select_related("request", "generation")
        .filter(pk=output_id, kind=Asset.Kind.OUTPUT, request__guest_links=link)
        .first()
    )


def decide_as_guest(
    *,
    link: GuestLink,
    guest_name: str,
    output: Asset,
    verdict: str,
    reason: str = "",
    comment: str = "",
    seen_decision_id: int | None = None,
) -> Decision:
    """Record a guest's approve or reject of one output of a shared request.

    The verdict counts in the request's current stage like a reviewer's, under the link and
    the name given, when the stage is one whose reviewers include who shared the link; the
    guests of one link count as one approver (see `verdicts.approver`).
    """
    if not link.may_decide:
        raise review.DecisionRefused("This link lets you look and comment, not decide.")
    if verdict not in (V.APPROVE, V.REJECT):
        raise review.DecisionRefused("A guest can approve or reject.")
    if verdict == V.REJECT and not reason:
        raise review.DecisionRefused("A reject needs a reason.")
    if not guest_name.strip():
        raise review.DecisionRefused("Give your name first.")
    with transaction.atomic():
        image_request = lock(ImageRequest, output.request_id)
        link = lock(GuestLink, link.pk)
        if link.revoked_at is not None or link.expires_at <= timezone.now():
            raise review.DecisionRefused("This link has ended: your decision was not recorded.")
        if not link.requests.filter(pk=image_request.pk).exists():
            raise review.DecisionRefused("This request is not shared with you.")
        if image_request.status != ImageRequest.Status.IN_REVIEW:
            raise review.DecisionRefused("This request is not awaiting review any more.")
        newer = _newer_decision(output, link, guest_name, seen_decision_id)
        if newer:
            raise review.DecisionConflict(
                f"{newer.decided_by()} decided this output "
                f"({newer.get_verdict_display().lower()}) while you were looking at it. "
                "Look at their decision, then decide again."
            )
        if not may_decide_in(image_request.stage, link.created_by):
            raise review.DecisionRefused(
                f"This request is now in the {image_request.stage.name} stage, which the person "
                "who shared it does not decide, so neither can this link."
            )
        if image_request.stage_id and output.pk not in stage_rule(image_request).outputs:
            raise review.DecisionRefused(
                "This output did not pass an earlier stage, so it is not up for decision in "
                f"{image_request.stage.name}."
            )
        before = review._standing_of(output, image_request)
        decision = Decision.objects.create(
            output=output,
            reviewer=None,
            guest_link=link,
            guest_name=guest_name.strip(),
            verdict=verdict,
            reason=reason,
            comment=comment,
            stage=image_request.stage,
        )
        review._announce(image_request, output, before, decision)
        review._settle_review(image_request, None, source="guest link")
    log.info("guest %r of link %s: %s on output %s", guest_name, link.pk, verdict, output.pk)
    return decision


def _newer_decision(
    output: Asset, link: GuestLink, guest_name: str, seen_decision_id: int | None
) -> Decision | None:
    """Someone else's decision on the output after the one the guest saw, if any."""
    if seen_decision_id is None:
        return None
    mine = Decision.objects.filter(guest_link=link, guest_name__iexact=guest_name.strip())
    return (
        Decision.objects.filter(output=output, pk__gt=seen_decision_id)
        .exclude(pk__in=mine.values("pk"))
        .select_related("reviewer")
        .first()
    )


def comment_as_guest(
    *, link: GuestLink, guest_name: str, output: Asset, comment: str
) -> Annotation:
    """Note a guest's comment on a whole output: a box over all of it, listed with the pins."""
    try:
        return annotations.add_annotation(
            output=output,
            guest_link=link,
            guest_name=guest_name,
            shape=Annotation.Shape.BOX,
            x=0,
            y=0,
            width=1,
            height=1,
            comment=comment,
        )
    except annotations.AnnotationRefused as refused:
        raise review.DecisionRefused(str(refused)) from refused
