"""A span of time as a person reads it on the dashboard: "42 s", "12 min 5 s", "3 h 7 min"."""

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(span: timedelta | None) -> str:
    if span is None:
        return ""
    seconds = max(int(span.total_seconds()), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"
