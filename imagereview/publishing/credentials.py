"""Content Credentials (C2PA) in published PNG and JPEG files: what made the image (a
generative model, from a prompt or from references), and who approved it."""

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import IO

from django.conf import settings

from imagereview.publishing.signer import signing_identity

log = logging.getLogger(__name__)

SUPPORTED_TYPES = ("image/png", "image/jpeg")
SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
APPROVAL_LABEL = "org.imagereview.approval"
# A signed file bigger than this is held in a temporary file instead of memory.
SPOOL_BYTES = 16 * 1024 * 1024
# c2pa's default thumbnails (1024 px) added 450 kB to a 1K PNG and tripled the time to sign
# a 4K one; at 256 px they add about 10 kB each, enough for a viewer to show.
C2PA_SETTINGS = {"builder": {"thumbnail": {"long_edge": 256}}}


class CredentialsError(Exception):
    """Content Credentials cannot be made or read here; the message says why."""


@dataclass(frozen=True)
class Reference:
    """A reference image an edit was made from, as an ingredient of the output."""

    stream: IO[bytes]
    content_type: str
    title: str


@dataclass(frozen=True)
class CredentialsOutcome:
    status: str  # "signed" | "skipped"
    note: str  # why skipped, or the signer's subject


def embed_credentials(
    source: IO[bytes],
    dest: IO[bytes],
    *,
    content_type: str,
    manifest: dict,
    references: Sequence[Reference],
) -> CredentialsOutcome:
    """Write the image in `source` into `dest` with Content Credentials made from
    `manifest`, or unchanged, with the reason, when they cannot be made here.

    They are skipped when C2PA_ENABLED is off, the type cannot carry them, c2pa cannot be
    loaded on this platform, or c2pa refuses this file: publishing goes on, and the outcome
    says why. A signing key or certificate chain that cannot be used (a wrong path, a
    certificate c2pa refuses) raises `SigningConfigurationError` instead, before anything
    is written: the operator chose that identity, an unsigned file once published cannot be
    recalled from the systems it reached, and every file would be skipped the same way, so
    publishing stops with the reason until the settings are fixed.
    """
    try:
        subject = _sign(source, dest, content_type, manifest, references)
    except CredentialsError as error:
        source.seek(0)
        shutil.copyfileobj(source, dest)
        return CredentialsOutcome(status="skipped", note=str(error))
    return CredentialsOutcome(status="signed", note=subject)


def read_credentials(stream: IO[bytes], content_type: str) -> dict:
    """Return the manifest store in `stream` as c2pa reads and validates it."""
    c2pa = _c2pa()
    try:
        with c2pa.Reader(content_type, stream) as reader:
            return json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound as error:
        raise CredentialsError("the file carries no Content Credentials") from error
    except c2pa.C2paError as error:
        raise CredentialsError(f"c2pa cannot read the Content Credentials: {error}") from error


def manifest_definition(manifest: dict, references: Sequence[Reference]) -> dict:
    """The C2PA manifest definition for an output's provenance manifest."""
    request, output, model = manifest["request"], manifest["output"], manifest["model"]
    made = {
        "action": "c2pa.created",
        "digitalSourceType": SOURCE_TYPES + manifest["digital_source_type"],
        "softwareAgent": {"name": f"{model['name']} via {model['provider']}"},
    }
    actions = [made]
    if request["mode"] == "edit":
        # c2pa accepts no manifest whose first action is not created (or opened, which
        # needs a parent ingredient): the new file is created, then told apart as an edit.
        edited = made | {"action": "c2pa.edited"}
        edited["parameters"] = {"ingredientIds": [_label(i) for i in range(len(references))]}
        actions.append(edited)
    approval = {
        "manifest_version": manifest["manifest_version"],
        "request_id": request["id"],
        "output_id": output["id"],
        "output_sha256": output["sha256"],
        "prompt": request["prompt"],
        "decisions": manifest["decisions"],
        "approval": manifest["approval"],
    }
    return {
        "claim_generator_info": [dict(manifest["generator"])],
        "title": f"Request #{request['id']}, variant {output['variant']}",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            {"label": APPROVAL_LABEL, "data": approval},
        ],
    }


def _sign(
    source: IO[bytes],
    dest: IO[bytes],
    content_type: str,
    manifest: dict,
    references: Sequence[Reference],
) -> str:
    """Write the signed image into `dest`; return the signer's subject."""
    if not settings.C2PA_ENABLED:
        raise CredentialsError("disabled by C2PA_ENABLED")
    if content_type not in SUPPORTED_TYPES:
        raise CredentialsError(
            f"Content Credentials are embedded in PNG and JPEG files only, not {content_type}"
        )
    c2pa = _c2pa()
    identity = signing_identity()
    # Signed aside first: a failure halfway must leave `dest` free for the unchanged copy.
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as signed:
        try:
            definition = manifest_definition(manifest, references)
            with (
                c2pa.Context.from_dict(C2PA_SETTINGS) as context,
                c2pa.Builder(definition, context) as builder,
            ):
                for index, reference in enumerate(references):
                    ingredient = {
                        "title": reference.title,
                        "relationship": "inputTo",
                        "label": _label(index),
                    }
                    builder.add_ingredient(ingredient, reference.content_type, reference.stream)
                source.seek(0)
                builder.sign(identity.signer, content_type, source, signed)
        except c2pa.C2paError as error:
            log.warning("Content Credentials not signed: %s", error)
            raise CredentialsError(f"c2pa could not sign this file: {error}") from error
        signed.seek(0)
        shutil.copyfileobj(signed, dest)
    return identity.subject


def _label(index: int) -> str:
    return f"reference-{index + 1}"


def _c2pa() -> ModuleType:
    try:
        import c2pa
    # What c2pa raises when its native library is missing or built for another platform.
    except (ImportError, OSError, RuntimeError, ValueError) as error:
        raise CredentialsError(f"c2pa cannot be loaded on this platform: {error}") from error
    return c2pa
