"""Saving outputs to a folder: verified by sha256, and skipped when already there."""

import hashlib
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from imagereview.cli.client import ApiClient
from imagereview.cli.errors import CliError, ExitCode
from imagereview.cli.output import progress

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass(frozen=True)
class Output:
    id: int
    request_id: int
    variant: int
    sha256: str
    download_url: str

    @property
    def stem(self) -> str:
        """The file's name without extension: stable, so a second run finds it."""
        return f"request-{self.request_id}-variant-{self.variant}-output-{self.id}"


def outputs_of(detail: dict) -> list[Output]:
    """The outputs of a request as its detail lists them."""
    return [
        Output(
            id=output["id"],
            request_id=detail["id"],
            variant=output["variant"],
            sha256=output["sha256"],
            download_url=output["download_url"],
        )
        for output in detail["outputs"]
    ]


def library_outputs(items: Iterable[dict]) -> list[Output]:
    """Outputs as the library listing gives them."""
    return [
        Output(
            id=item["id"],
            request_id=item["request_id"],
            variant=item["variant"],
            sha256=item["sha256"],
            download_url=item["download_url"],
        )
        for item in items
    ]


def download_outputs(client: ApiClient, outputs: list[Output], directory: Path) -> list[dict]:
    """Save each output into `directory` unless a file of it with the same sha256 is there.

    A file is written under a temporary name and renamed only once its sha256 matches the
    server's, so an interrupted run never leaves a partial image under a real name.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(
            f"Cannot use {directory} as the download folder: {error.strerror}.",
            exit_code=ExitCode.USAGE,
        ) from error
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with progress(*columns) as display:
        task = display.add_task("Downloading", total=len(outputs))
        for output in outputs:
            if path := _existing_copy(directory, output):
                outcome = "kept"
            else:
                path, outcome = _download(client, directory, output), "saved"
            results.append(
                {
                    "output_id": output.id,
                    "sha256": output.sha256,
                    "path": str(path),
                    "outcome": outcome,
                }
            )
            display.advance(task)
    return results


def _existing_copy(directory: Path, output: Output) -> Path | None:
    for path in sorted(directory.glob(f"{output.stem}.*")):
        if _sha256_of(path) == output.sha256:
            return path
    return None


def _download(client: ApiClient, directory: Path, output: Output) -> Path:
    partial = directory / f".{output.stem}.part"
    try:
        sha256, content_type = client.download(output.download_url, partial)
        if sha256 != output.sha256:
            raise CliError(
                f"Output {output.id} arrived damaged: its sha256 is {sha256}, the server "
                f"lists {output.sha256}. Nothing was saved for it; run the command again.",
                exit_code=ExitCode.UNREACHABLE,
            )
        extension = EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type)
        path = directory / f"{output.stem}{extension or '.bin'}"
        partial.replace(path)
        return path
    finally:
        partial.unlink(missing_ok=True)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
