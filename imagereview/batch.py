"""CSV batch intake: check a file of prompt-only requests row by row, then create them.

Every row goes through `GenerationRequestForm`, so a row passes exactly when the same values
typed into the web form would, with the same messages.
"""

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from imagereview import actions
from imagereview.forms import GenerationRequestForm
from imagereview.models import ImageRequest

log = logging.getLogger(__name__)

MAX_BATCH_ROWS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
OPTIONAL_COLUMNS = (
    "aspect_ratio",
    "resolution",
    "output_format",
    "variants",
    "required_approvals",
    "approval_quota",
    "auto_publish",
    "auto_reject",
    "due",
    "priority",
    "workflow",
)
COLUMNS = ("prompt", *OPTIONAL_COLUMNS)
# The form field of a column named otherwise.
FORM_NAMES = {"due": "due_at"}
# A blank or missing cell means what the web form starts with.
DEFAULTS = {
    name: str(initial)
    if (initial := GenerationRequestForm.base_fields[FORM_NAMES.get(name, name)].initial)
    is not None
    else ""
    for name in OPTIONAL_COLUMNS
}
YES_NO = {"yes": "on", "true": "on", "1": "on", "no": "", "false": "", "0": "", "": ""}


@dataclass(frozen=True)
class BatchRow:
    """One data row: its number in the file (the header is row 1), the values it asks for,
    and either the fields for `create_request` or the form's messages."""

    number: int
    values: dict[str, str]
    fields: dict[str, object] | None = None
    errors: tuple[str, ...] = ()
    invalid_columns: frozenset[str] = frozenset()

    @property
    def is_valid(self) -> bool:
        return self.fields is not None and not self.errors


@dataclass(frozen=True)
class BatchCheck:
    """A checked file: what is wrong with the file as a whole, or a result for every row."""

    # The decoded CSV, sent back with the confirmation and checked again there.
    text: str
    rows: tuple[BatchRow, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def valid_rows(self) -> list[BatchRow]:
        return [row for row in self.rows if row.is_valid]

    @property
    def invalid_rows(self) -> list[BatchRow]:
        return [row for row in self.rows if not row.is_valid]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.invalid_rows)


class BatchUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        # An empty file gets parse_batch's own, more helpful message.
        allow_empty_file=True,
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
        error_messages={"required": "Choose a CSV file to upload."},
    )


class BatchConfirmForm(forms.Form):
    """The second step: the checked text once more (checked again, never trusted) and the
    choice to create only the valid rows."""

    # A plain Field: no stripping or NUL check, so the text reaches parse_batch_text as sent.
    csv = forms.Field(widget=forms.HiddenInput, required=False)
    only_valid = forms.BooleanField(required=False)


def parse_batch(file: IO[bytes]) -> BatchCheck:
    """Check an uploaded CSV file: size, encoding and header, then every row."""
    raw = file.read(MAX_BATCH_BYTES + 1)
    if len(raw) > MAX_BATCH_BYTES:
        return _too_large("")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return BatchCheck(
            text="",
            errors=(
                f"The file is not UTF-8 text (byte {error.start + 1:,} is not valid UTF-8). "
                "Save it as “CSV UTF-8” and upload it again.",
            ),
        )
    return parse_batch_text(text)


def parse_batch_text(text: str) -> BatchCheck:
    """Check CSV text: a decoded upload, or the same text sent back to confirm it."""
    # Browsers send form values back with CRLF line breaks; one kind of line break makes
    # the confirmation parse exactly what was checked.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text.encode()) > MAX_BATCH_BYTES:
        return _too_large(text)
    if "\x00" in text:
        # A UTF-16 file (no BOM) of plain ASCII is valid UTF-8 full of NULs.
        return _failed(
            text, "The file is not UTF-8 text (it contains NUL characters; UTF-16, perhaps?)."
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    try:
        records = list(reader)
    except csv.Error as error:
        return _failed(text, f"Line {reader.line_num:,} of the file is not valid CSV: {error}.")
    if all(_is_blank(cells) for cells in records):
        return _failed(text, "The file is empty: add a header row, then one row per request.")
    header, *body = records
    columns = [name.strip().lower() for name in header]
    if errors := _header_errors(columns):
        return BatchCheck(text=text, errors=tuple(errors))
    numbered = [(n, cells) for n, cells in enumerate(body, start=2) if not _is_blank(cells)]
    if not numbered:
        return _failed(text, "The file has a header but no rows: add one row per request.")
    if len(numbered) > MAX_BATCH_ROWS:
        return _failed(
            text,
            f"The file has {len(numbered):,} rows; at most {MAX_BATCH_ROWS} fit in one batch. "
            "Split it into smaller files.",
        )
    return BatchCheck(text=text, rows=tuple(_check_row(n, columns, cells) for n, cells in numbered))


def column_guide() -> list[tuple[str, str]]:
    """Each column and what it takes, for the upload page."""
    fields = GenerationRequestForm.base_fields
    guide = [("prompt", f"required, at most {fields['prompt'].max_length:,} characters")]
    described = {
        "auto_reject": "yes or no (default no). Reject outputs that fail an acceptance check "
        "without asking a reviewer.",
        "due": "blank, or an ISO date (the end of that day) or date and time such as "
        "2026-12-24 17:00, in the site's time zone; not in the past.",
    }
    for name in OPTIONAL_COLUMNS:
        if name in described:
            guide.append((name, described[name]))
            continue
        choices = fields[name].choices
        values = ", ".join(str(value) for value, _ in choices if value != "")
        default = DEFAULTS[name] or f"blank: {choices[0][1].lower()}"
        explained = f" {fields[name].help_text}" if fields[name].help_text else ""
        guide.append((name, f"{values} (default {default}).{explained}"))
    return guide


def import_rows(*, requester: AbstractBaseUser, rows: Sequence[BatchRow]) -> list[ImageRequest]:
    """Create one prompt-only request per row: all of them, or none if any fails.

    Pass only valid rows. Their generations are due for submission once the batch commits.
    """
    if invalid := [row.number for row in rows if not row.is_valid]:
        raise ValueError(f"rows with errors cannot be imported: {invalid}")
    with transaction.atomic():
        created = [
            actions.create_request(
                requester=requester, mode=ImageRequest.Mode.GENERATE, **row.fields
            )
            for row in rows
        ]
    log.info("batch of %s requests by %s", len(created), requester)
    return created


def _check_row(number: int, columns: list[str], cells: list[str]) -> BatchRow:
    given = {name: cell.strip() for name, cell in zip(columns, cells, strict=False)}
    values = {name: given.get(name) or DEFAULTS.get(name, "") for name in COLUMNS}
    data = {FORM_NAMES.get(name, name): value for name, value in values.items()}
    data["auto_reject"] = YES_NO.get(values["auto_reject"].lower(), "?")
    form = GenerationRequestForm(data=data)
    problems = []
    if data["auto_reject"] == "?":
        problems.append("auto_reject: write yes or no.")
    # Spreadsheets pad rows with empty cells; only a value past the last column is a mistake.
    if any(cell.strip() for cell in cells[len(columns) :]):
        problems.append(f"This row has more values than the header has columns ({len(columns)}).")
    if form.is_valid() and not problems:
        return BatchRow(number=number, values=values, fields=form.request_fields())
    problems += [message for messages in form.errors.values() for message in messages]
    columns_of = {form_name: name for name, form_name in FORM_NAMES.items()}
    invalid = {columns_of.get(name, name) for name in form.errors}
    if data["auto_reject"] == "?":
        invalid.add("auto_reject")
    return BatchRow(
        number=number,
        values=values,
        errors=tuple(problems),
        invalid_columns=frozenset(invalid),
    )


def _header_errors(columns: list[str]) -> list[str]:
    errors = []
    if unknown := list(dict.fromkeys(name for name in columns if name not in COLUMNS)):
        names = ", ".join(name or "(a blank name)" for name in unknown)
        errors.append(
            f"Unknown column{'s' if len(unknown) > 1 else ''} in the header: {names}. "
            f"The columns are: {', '.join(COLUMNS)}."
        )
    if repeated := sorted({name for name in columns if name and columns.count(name) > 1}):
        errors.append(f"Each column may appear once; repeated: {', '.join(repeated)}.")
    if "prompt" not in columns:
        errors.append("The header (row 1) has no prompt column; it is required.")
    return errors


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _failed(text: str, message: str) -> BatchCheck:
    return BatchCheck(text=text, errors=(message,))


def _too_large(text: str) -> BatchCheck:
    megabytes = MAX_BATCH_BYTES // (1024 * 1024)
    return _failed(text, f"The file is larger than {megabytes} MB; split it into smaller files.")
