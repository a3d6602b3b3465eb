"""Export: outputs as one ZIP, written while it is sent.

For each output, `images/<name>` (its stored file as it is, named as publishing names it),
`manifests/<stem>.json` (its provenance manifest) and a row of `index.csv`. Files are read in
chunks and outputs fetched in batches, so memory does not grow with the export; only the
ZIP's central directory (some hundred bytes a file) does.
"""

import csv
import io
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date
from typing import IO, Any
from zipfile import ZIP_DEFLATED, ZIP_STORED

from django.db.models import QuerySet
from zipstream import ZipStream

from imagereview.models import Asset, ImageRequest, Publication
from imagereview.publishing import targets
from imagereview.publishing.manifest import manifests_for
from imagereview.queries import outcomes
from imagereview.queries.outcomes import output_verdict
from imagereview.queries.pages import beyond, ordering
from imagereview.verdicts import counting_rows, standings

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
BATCH = 200
# Beyond this the index goes to a temporary file instead of memory.
INDEX_IN_MEMORY = 1024 * 1024
ORDER = ("request_id", "id")
# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = [
    "request_id",
    "revision",
    "variant",
    "output_id",
    "mode",
    "prompt",
    "aspect_ratio",
    "resolution",
    "output_format",
    "width",
    "height",
    "bytes",
    "sha256",
    "verdict",
    "approvals",
    "published_target",
    "published_key",
    "file",
    "manifest",
    "problem",
]


def export_name(day: date) -> str:
    return f"imagereview-export-{day:%Y-%m-%d}.zip"


def neutralise(cell: Any) -> Any:
    """A text cell a spreadsheet will show as text, never run as a formula."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def stream_export(outputs: QuerySet[Asset]) -> Iterator[bytes]:
    """Yield the ZIP of `outputs` piece by piece: images and manifests, then `index.csv`.

    Images are stored as they are (they are compressed already), JSON and CSV deflated. An
    output whose stored file cannot be read is left out of `images/`, and its index row says
    why, rather than breaking the download halfway.
    """
    archive = ZipStream(compress_type=ZIP_DEFLATED)
    with tempfile.SpooledTemporaryFile(max_size=INDEX_IN_MEMORY) as index:
        index.write(_csv_line(COLUMNS))
        for batch in _batches(outputs):
            documents = manifests_for(batch)
            ids = [output.pk for output in batch]
            tallies = standings(counting_rows(output_id__in=ids))
            published = _published(ids)
            for output in batch:
                image = f"images/{targets.file_name(output)}"
                manifest = f"manifests/{targets.file_stem(output)}.json"
                archive.add(_json(documents[output.pk]), manifest)
                problem = ""
                try:
                    stored = output.file.storage.open(output.file.name, "rb")
                except OSError as error:
                    log.warning("export: output %s has no readable file: %s", output.pk, error)
                    problem = "The stored file could not be read; it is not in this export."
                    image = ""
                else:
                    archive.add(_chunks(stored), image, size=output.bytes, compress_type=ZIP_STORED)
                verdict = output_verdict(output.request, tallies.get(output.pk))
                approvals = len(tallies[output.pk].approvals) if output.pk in tallies else 0
                row = _index_row(output, verdict, approvals, published.get(output.pk, []))
                index.write(_csv_line([*row, image, manifest, problem]))
                yield from archive.all_files()
        index.seek(0)
        archive.add(_chunks(index), "index.csv")
        yield from archive.finalize()


def _batches(outputs: QuerySet[Asset]) -> Iterator[list[Asset]]:
    """The outputs by request and id, a batch at a time, each batch found by its key."""
    queryset = outputs.select_related("request", "generation").order_by(
        *ordering(ascending=True, key=ORDER)
    )
    position = None
    while True:
        page = (
            queryset.filter(beyond(position, ascending=True, key=ORDER)) if position else queryset
        )
        batch = list(page[:BATCH])
        if not batch:
            return
        yield batch
        position = (batch[-1].request_id, batch[-1].pk)


def _published(output_ids: list[int]) -> dict[int, list[Publication]]:
    found: dict[int, list[Publication]] = {}
    for publication in (
        Publication.objects.filter(output_id__in=output_ids, state=Publication.State.PUBLISHED)
        .only("output_id", "target", "key")
        .order_by("created_at", "id")
    ):
        found.setdefault(publication.output_id, []).append(publication)
    return found


def _index_row(
    output: Asset, verdict: str, approvals: int, publications: list[Publication]
) -> list[Any]:
    image_request: ImageRequest = output.request
    variant = output.generation.variant if output.generation else output.index + 1
    return [
        image_request.pk,
        image_request.revision,
        variant,
        output.pk,
        image_request.mode,
        image_request.prompt,
        image_request.aspect_ratio,
        image_request.resolution,
        image_request.output_format,
        output.width,
        output.height,
        output.bytes,
        output.sha256,
        outcomes.VERDICT_WORDS[verdict],
        approvals,
        "; ".join(publication.target for publication in publications),
        "; ".join(publication.key for publication in publications),
    ]


def _csv_line(cells: Iterable[Any]) -> bytes:
    line = io.StringIO()
    csv.writer(line).writerow([neutralise(cell) for cell in cells])
    return line.getvalue().encode()


def _json(document: dict) -> bytes:
    # On one line: without `indent` the C encoder does the work, four times faster, which
    # is a third of an export's own time.
    return json.dumps(document, ensure_ascii=False).encode()


def _chunks(stored: IO[bytes]) -> Iterator[bytes]:
    """Read `stored` a chunk at a time, then close it."""
    with stored:
        while chunk := stored.read(CHUNK):
            yield chunk
