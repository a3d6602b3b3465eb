"""Publish targets: Django storages named `publish-<target>` in settings.STORAGES, and the
stable, readable names files get there."""

from django.conf import settings
from django.core.files.storage import Storage, storages

from imagereview.media import FORMAT_EXTENSIONS
from imagereview.models import Asset


class UnknownTarget(Exception):
    pass


def storage_for(target: str) -> Storage:
    if target not in settings.PUBLISH_TARGETS:
        raise UnknownTarget(
            f"There is no publish target {target!r}; "
            f"the targets are: {', '.join(settings.PUBLISH_TARGETS)}."
        )
    return storages[f"publish-{target}"]


def file_stem(output: Asset) -> str:
    """`<request id>-v<revision>-<variant>-<sha256[:12]>`: readable, and one per output."""
    request = output.request
    variant = output.generation.variant if output.generation_id else output.index + 1
    return f"{request.pk}-v{request.revision}-{variant}-{output.sha256[:12]}"


def file_name(output: Asset) -> str:
    extension = FORMAT_EXTENSIONS.get(output.content_type.split("/")[-1].upper(), "bin")
    return f"{file_stem(output)}.{extension}"


def publish_key(output: Asset) -> str:
    """Where an output is published: `<yyyy>/<mm>/<file name>`, by when it was requested."""
    return f"{output.request.created_at:%Y/%m}/{file_name(output)}"


def manifest_key(key: str) -> str:
    return f"{key.rsplit('.', 1)[0]}.manifest.json"
