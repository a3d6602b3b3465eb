"""The notifications a user is shown: those delivered, never one still held back."""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from imagereview.models import Notification


def delivered(now: datetime | None = None) -> Q:
    """Notifications due by `now`: never held, or held until a moment that has passed."""
    return Q(deliver_after__isnull=True) | Q(deliver_after__lte=now or timezone.now())


def delivered_to(recipient: AbstractBaseUser, *, now: datetime | None = None) -> QuerySet:
    """The recipient's notifications that may be listed, counted and opened."""
    return Notification.objects.filter(delivered(now), recipient=recipient)
