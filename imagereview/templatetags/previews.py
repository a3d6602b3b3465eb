"""What a page shows of a stored image: its preview when it has one, else the original.

`{{ asset|screen_url }}` is the address, `{{ asset|screen_width }}` and
`{{ asset|screen_height }}` the pixel size of that file (for the img's width and height, so
the layout does not move as it loads).
"""

from django import template
from django.urls import reverse

from imagereview.models import Asset

register = template.Library()


@register.filter
def screen_url(asset: Asset) -> str:
    variant = "preview" if asset.preview else "file"
    return reverse("asset_file", args=[asset.pk, variant])


@register.filter
def screen_width(asset: Asset) -> int:
    return asset.preview_width if asset.preview else asset.width


@register.filter
def screen_height(asset: Asset) -> int:
    return asset.preview_height if asset.preview else asset.height
