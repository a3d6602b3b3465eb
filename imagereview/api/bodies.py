"""Reading request bodies: JSON objects, or multipart forms with files, into form data.

Only the shape is checked here (an object, known field names, one value or a list where
each belongs); what the values may be is the Django forms' to say.
"""

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest

from imagereview import media
from imagereview.api.problems import invalid

MULTIPART = "multipart/form-data"


@dataclass
class Body:
    """What a client sent: scalar fields, list fields, and uploaded files by field."""

    values: dict[str, object]
    lists: dict[str, list] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)

    def fingerprint_parts(self) -> dict:
        """What makes two sendings of this body the same (files by their sha256)."""
        digests = {}
        for name, uploads in self.files.items():
            digests[name] = []
            for upload in uploads:
                digests[name].append(media.digest(upload)[0])
                upload.seek(0)
        return {"values": self.values, "lists": self.lists, "files": digests}


def read(
    request: HttpRequest,
    *,
    scalars: Collection[str],
    lists: Collection[str] = (),
    files: Collection[str] = (),
) -> Body:
    """The body as named fields; a 422 problem for anything else."""
    if request.content_type == MULTIPART:
        return _read_multipart(request, scalars=scalars, lists=lists, files=files)
    return _read_json(request, scalars=scalars, lists=lists, files=files)


def _read_json(
    request: HttpRequest,
    *,
    scalars: Collection[str],
    lists: Collection[str],
    files: Collection[str],
) -> Body:
    if not request.body.strip():
        document: object = {}
    else:
        try:
            document = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise invalid({"__all__": [f"The body is not valid JSON: {error}."]}) from error
    if not isinstance(document, dict):
        raise invalid({"__all__": ["The body must be a JSON object."]})
    _refuse_unknown(document, scalars, lists, files)
    errors: dict[str, list[str]] = {}
    body = Body(values={})
    for name, value in document.items():
        if name in files:
            errors[name] = ["Files are sent as multipart/form-data, not in JSON."]
        elif name in lists:
            if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
                errors[name] = ["Send a list of values."]
            else:
                body.lists[name] = value
        elif value is None:
            continue  # null: as if omitted
        elif isinstance(value, dict | list):
            errors[name] = ["Send a single value, not a list or an object."]
        else:
            body.values[name] = value
    if errors:
        raise invalid(errors)
    return body


def _read_multipart(
    request: HttpRequest,
    *,
    scalars: Collection[str],
    lists: Collection[str],
    files: Collection[str],
) -> Body:
    _refuse_unknown({**request.POST, **request.FILES}, scalars, lists, files)
    body = Body(values={})
    for name in request.POST:
        if name in lists:
            body.lists[name] = request.POST.getlist(name)
        else:
            body.values[name] = request.POST[name]
    for name in request.FILES:
        body.files[name] = request.FILES.getlist(name)
    return body


def _refuse_unknown(
    document: dict, scalars: Collection[str], lists: Collection[str], files: Collection[str]
) -> None:
    known = {*scalars, *lists, *files}
    unknown = sorted(set(document) - known)
    if unknown:
        raise invalid(
            {name: [f"Unknown field; known: {', '.join(sorted(known))}."] for name in unknown}
        )


def as_choice(value: object) -> object:
    """A JSON boolean as the yes/no of a form's choice; other values as sent."""
    if value is True or value == "true":
        return "yes"
    if value is False or value == "false":
        return "no"
    return "" if value is None else value
