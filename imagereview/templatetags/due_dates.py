"""A request's due date and priority as the queue and the review page show them."""

from django import template
from django.utils import timezone

from imagereview.due import Due, due_state
from imagereview.models import ImageRequest

register = template.Library()


@register.filter
def due(image_request: ImageRequest) -> Due | None:
    return due_state(image_request)


@register.filter
def priority_name(image_request: ImageRequest) -> str:
    """low, normal, high or urgent: the CSS class of the priority badge."""
    return ImageRequest.Priority(image_request.priority).name.lower()


@register.filter
def stands_out(image_request: ImageRequest) -> bool:
    """Whether the priority earns a badge in a list: high and urgent."""
    return image_request.priority >= ImageRequest.Priority.HIGH


@register.filter
def is_overdue(image_request: ImageRequest) -> bool:
    return image_request.due_at is not None and image_request.due_at <= timezone.now()
