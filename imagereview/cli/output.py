"""What the commands print: rich tables for people, the API's own JSON for scripts."""

import json
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn
from rich.table import Table

# Tables and messages on stdout; problems and progress on stderr, so `--json` output stays
# clean for a pipe.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def print_problem(lines: Iterable[str]) -> None:
    first, *rest = lines
    err.print(f"[bold red]Error:[/] {escape(first)}")
    for line in rest:
        err.print(escape(line))


def print_me(me: dict) -> None:
    table = _fields_table()
    table.add_row("user", me["username"])
    roles = [
        name for name, flag in (("reviewer", "is_reviewer"), ("staff", "is_staff")) if me[flag]
    ]
    table.add_row("roles", ", ".join(roles) or "requester")
    table.add_row("scopes", ", ".join(me["scopes"]))
    for name, value in me.get("limits", {}).items():
        table.add_row(name.replace("_", " "), f"{value:,}" if isinstance(value, int) else value)
    out.print(table)


def print_requests(items: list[dict], *, more: bool) -> None:
    table = Table("id", "status", "mode", "variants", "prompt", "requester", "created")
    for item in items:
        table.add_row(
            str(item["id"]),
            item["status"],
            item["mode"],
            str(item["variants"]),
            _shorten(item["prompt"], 50),
            item["requester"],
            item["created_at"][:16].replace("T", " "),
        )
    out.print(table)
    shown = f"{len(items)} request{'s' if len(items) != 1 else ''}"
    out.print(f"{shown}; more with --limit or --all." if more else shown)


def print_request(detail: dict) -> None:
    table = _fields_table()
    table.add_row("request", f"{detail['id']} ({detail['mode']}, revision {detail['revision']})")
    table.add_row("status", detail["status"])
    table.add_row("prompt", escape(detail["prompt"]))
    table.add_row(
        "parameters",
        f"{detail['aspect_ratio']}, {detail['resolution']}, {detail['output_format']}, "
        f"{detail['variants']} variant{'s' if detail['variants'] != 1 else ''}",
    )
    table.add_row(
        "approvals",
        f"{detail['required_approvals']} per output, {detail['approval_quota']} outputs needed",
    )
    if detail["references"]:
        sizes = [f"{ref['id']} ({ref['width']}x{ref['height']})" for ref in detail["references"]]
        table.add_row("references", ", ".join(sizes))
    if len(detail["revisions"]) > 1:
        chain = [f"{rev['revision']}: {rev['id']} {rev['status']}" for rev in detail["revisions"]]
        table.add_row("revisions", ", ".join(chain))
    table.add_row("requester", detail["requester"])
    table.add_row("credits", str(detail.get("credits")))
    table.add_row("url", detail["url"])
    out.print(table)
    if detail["generations"]:
        generations = Table("generation", "variant", "state", "attempts", "failure", title=None)
        for generation in detail["generations"]:
            failure = " ".join(
                str(part)
                for part in (generation["failure_code"], generation["failure_message"])
                if part
            )
            generations.add_row(
                str(generation["id"]),
                str(generation["variant"]),
                generation["state"],
                str(generation["attempts"]),
                escape(failure),
            )
        out.print(generations)
    if detail["outputs"]:
        outputs = Table("output", "variant", "size", "sha256", "flags", "verdict", "published")
        for output in detail["outputs"]:
            publication = output.get("publication") or {}
            outputs.add_row(
                str(output["id"]),
                str(output["variant"]),
                f"{output['width']}x{output['height']}",
                output["sha256"][:12],
                ", ".join(str(flag) for flag in output["flags"]) or "-",
                output["verdict"] or "-",
                publication.get("state", "-"),
            )
        out.print(outputs)
    if detail["decisions"]:
        decisions = Table("decision", "output", "verdict", "reason", "reviewer", "comment")
        for decision in detail["decisions"]:
            verdict = decision["verdict"] + (" (undone)" if decision["undone"] else "")
            decisions.add_row(
                str(decision["id"]),
                str(decision["output_id"]),
                verdict,
                decision["reason"] or "-",
                decision["reviewer"] or "rules",
                escape(decision["comment"] or ""),
            )
        out.print(decisions)


def print_batch(results: list[dict]) -> None:
    table = Table("row", "result", "request", "prompt")
    for result in results:
        created = result["request"]
        table.add_row(
            str(result["row"]),
            "[green]created[/]" if created else "[red]refused[/]",
            f"{created['id']} ({created['status']})" if created else "-",
            _shorten(result["prompt"], 40),
        )
    out.print(table)
    for result in results:
        for message in result.get("errors", ()):
            out.print(f"row {result['row']}: {escape(message)}")
    done = sum(1 for result in results if result["request"])
    out.print(f"{done} of {len(results)} rows created.")


def progress(*columns: ProgressColumn) -> Progress:
    """A progress display on stderr, shown only to a person at a terminal."""
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


def print_downloads(results: list[dict], directory: str) -> None:
    saved = sum(1 for result in results if result["outcome"] == "saved")
    kept = len(results) - saved
    out.print(f"{saved} saved, {kept} already there with the same sha256, in {directory}")


def _fields_table() -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    return table


def _shorten(text: str, width: int) -> str:
    line = " ".join(text.split())
    return escape(line if len(line) <= width else line[: width - 1] + "…")
