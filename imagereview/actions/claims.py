"""The review claim: a soft mark of who has a request's review page open, shown to others."""

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from imagereview.models import ImageRequest

# The open page renews its claim every CLAIM_RENEW; a claim missing three renewals in a row
# belongs to a page that closed without saying so (a crash, a lost connection).
CLAIM_RENEW = timedelta(seconds=30)
CLAIM_TTL = 3 * CLAIM_RENEW
RELEASED = {"claimed_by": None, "claimed_at": None}


def other_claimant(
    image_request: ImageRequest, reviewer: AbstractBaseUser
) -> AbstractBaseUser | None:
    """Another reviewer who has had the request open within the claim's time, if any."""
    live = image_request.claimed_at and timezone.now() - image_request.claimed_at < CLAIM_TTL
    if live and image_request.claimed_by_id not in (None, reviewer.pk):
        return image_request.claimed_by
    return None


def claim(image_request: ImageRequest, reviewer: AbstractBaseUser) -> AbstractBaseUser | None:
    """Mark the request as being looked at, or renew the mark; return another's live claim."""
    holder = other_claimant(image_request, reviewer)
    if holder is None:
        ImageRequest.objects.filter(pk=image_request.pk).update(
            claimed_by=reviewer, claimed_at=timezone.now()
        )
    return holder


def release_claim(*, image_request_id: int, reviewer: AbstractBaseUser) -> bool:
    """End the reviewer's own claim on the request, if they hold it; another's is left alone."""
    return bool(
        ImageRequest.objects.filter(pk=image_request_id, claimed_by=reviewer).update(**RELEASED)
    )
