"""A request's status in its requester's words: `{{ image_request|status_words }}`, and the
badge class that goes with it: `{{ image_request|status_class }}`.

An approved request marked as having a live publication
(`queries.outcomes.mark_live_publications`) is "Published"; unmarked, "Approved".
"""

from django import template

from imagereview.models import ImageRequest
from imagereview.queries import outcomes

register = template.Library()


def _published(image_request: ImageRequest) -> bool:
    return getattr(image_request, "live_publication", False)


@register.filter
def status_words(image_request: ImageRequest) -> str:
    return outcomes.status_words(image_request.status, published=_published(image_request))


@register.filter
def status_class(image_request: ImageRequest) -> str:
    return outcomes.standing_of(image_request.status, published=_published(image_request))
