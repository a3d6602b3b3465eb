"""`imagereview batch`: one request per CSV row, each safe to send again.

The columns are the web batch's. Each row's Idempotency-Key comes from the file's SHA-256
and the row's number, so running the same file again after an interruption creates only the
rows that were not created yet; an edited file is a new batch.
"""

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from imagereview.cli.errors import CliError, ExitCode

COLUMNS = (
    "prompt",
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
# The API field of a column named otherwise.
API_NAMES = {"due": "due_at"}
NUMBER_COLUMNS = {"variants", "required_approvals", "approval_quota"}
YES_NO = {"yes": True, "true": True, "no": False, "false": False}


@dataclass(frozen=True)
class BatchRow:
    """A data row: its line in the file (the header is row 1), the request it asks for, and
    what is wrong with it before anything is sent."""

    number: int
    idempotency_key: str
    body: dict[str, object]
    errors: tuple[str, ...] = field(default=())


def read_batch(path: Path) -> list[BatchRow]:
    """Read and check the file's shape; the values are the server's to judge."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CliError(
            f"Cannot read {path}: {error.strerror}.", exit_code=ExitCode.USAGE
        ) from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CliError(
            f"{path} is not UTF-8 text (byte {error.start + 1:,}); save it as “CSV UTF-8”.",
            exit_code=ExitCode.USAGE,
        ) from error
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    try:
        records = list(reader)
    except csv.Error as error:
        raise CliError(
            f"Line {reader.line_num:,} of {path} is not valid CSV: {error}.",
            exit_code=ExitCode.USAGE,
        ) from error
    if not records:
        raise CliError(
            f"{path} is empty: add a header row, then one row per request.",
            exit_code=ExitCode.USAGE,
        )
    header, *body = records
    columns = [name.strip().lower() for name in header]
    _check_header(path, columns)
    file_hash = hashlib.sha256(raw).hexdigest()
    rows = [
        _row(number, columns, cells, file_hash)
        for number, cells in enumerate(body, start=2)
        if any(cell.strip() for cell in cells)
    ]
    if not rows:
        raise CliError(f"{path} has a header but no rows.", exit_code=ExitCode.USAGE)
    return rows


def _check_header(path: Path, columns: list[str]) -> None:
    problems = []
    if unknown := [name or "(a blank name)" for name in columns if name not in COLUMNS]:
        problems.append(f"Unknown columns in the header of {path}: {', '.join(unknown)}.")
    if repeated := sorted({name for name in columns if columns.count(name) > 1}):
        problems.append(f"Each column may appear once; repeated: {', '.join(repeated)}.")
    if "prompt" not in columns:
        problems.append(f"The header of {path} has no prompt column; it is required.")
    if problems:
        problems.append(f"The columns are: {', '.join(COLUMNS)}.")
        raise CliError(*problems, exit_code=ExitCode.USAGE)


def _row(number: int, columns: list[str], cells: list[str], file_hash: str) -> BatchRow:
    body: dict[str, object] = {"mode": "generate"}
    for name, cell in zip(columns, cells, strict=False):
        if value := cell.strip():
            body[API_NAMES.get(name, name)] = _value(name, value)
    errors = ()
    # Spreadsheets pad rows with empty cells; only a value past the last column is a mistake.
    if any(cell.strip() for cell in cells[len(columns) :]):
        errors = (f"This row has more values than the header has columns ({len(columns)}).",)
    key = f"batch-{file_hash[:48]}-row-{number}"
    return BatchRow(number=number, idempotency_key=key, body=body, errors=errors)


def _value(column: str, value: str) -> object:
    """The JSON value of a cell; one that does not convert is sent as written, for the
    server to explain."""
    if column in NUMBER_COLUMNS and value.isdigit():
        return int(value)
    if column in ("auto_publish", "auto_reject"):
        return YES_NO.get(value.lower(), value)
    return value
