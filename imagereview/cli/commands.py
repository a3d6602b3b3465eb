"""What each command does: read its arguments, call the API, print the answer."""

import getpass
import mimetypes
import os
import sys
from argparse import Namespace
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from imagereview.cli import config, output
from imagereview.cli.batch import read_batch
from imagereview.cli.client import ApiClient
from imagereview.cli.downloads import download_outputs, library_outputs, outputs_of
from imagereview.cli.errors import CliError, ExitCode
from imagereview.cli.waiting import exit_code_after_waiting, wait_for_review

# Command-line option -> API field, for the parameters every request takes.
REQUEST_OPTIONS = {
    "aspect_ratio": "aspect_ratio",
    "resolution": "resolution",
    "output_format": "output_format",
    "variants": "variants",
    "approvals": "required_approvals",
    "quota": "approval_quota",
    "auto_publish": "auto_publish",
    "due": "due_at",
    "priority": "priority",
}
MAX_PAGE = 100


def connect(args: Namespace) -> ApiClient:
    try:
        connection = config.resolve(url=args.url, token=args.token)
    except config.ConfigError as error:
        raise CliError(str(error), exit_code=ExitCode.USAGE) from error
    return ApiClient(connection)


def login(args: Namespace) -> ExitCode:
    url = args.url or os.environ.get(config.URL_VARIABLE) or _ask("Server URL: ")
    token = args.token or os.environ.get(config.TOKEN_VARIABLE)
    if not token:
        if not sys.stdin.isatty():
            raise CliError("Pass the token with --token.", exit_code=ExitCode.USAGE)
        token = getpass.getpass(
            f"API token (create one at {config.site_url(url)}/account/tokens/): "
        )
    connection = config.Connection(url=config.site_url(url), token=token.strip())
    with ApiClient(connection) as client:
        me = client.get("me")
    path = config.save(connection)
    if args.json:
        output.print_json({**me, "url": connection.url, "config": str(path)})
    else:
        output.out.print(
            f"Logged in to {connection.url} as {me['username']} "
            f"(scopes: {', '.join(me['scopes'])}); saved in {path}."
        )
    return ExitCode.OK


def whoami(args: Namespace) -> ExitCode:
    with connect(args) as client:
        me = client.get("me")
    if args.json:
        output.print_json(me)
    else:
        output.print_me(me)
    return ExitCode.OK


def generate(args: Namespace) -> ExitCode:
    body = {"mode": "generate", "prompt": args.prompt, **_request_fields(args)}
    with connect(args) as client:
        detail = client.post("requests", json=body)
        return _follow(client, args, detail)


def edit(args: Namespace) -> ExitCode:
    if not (args.reference or args.reference_url or args.from_output):
        raise CliError(
            "An edit needs references: --reference FILE, --reference-url URL or --from-output ID.",
            exit_code=ExitCode.USAGE,
        )
    fields = {"mode": "edit", "prompt": args.prompt, **_request_fields(args)}
    with connect(args) as client:
        if args.reference:
            files = [("references", _reference_file(path)) for path in args.reference]
            data = {
                **{name: _form_value(value) for name, value in fields.items()},
                "reference_urls": args.reference_url,
                "reference_output_ids": [str(number) for number in args.from_output],
            }
            detail = client.post("requests", data=data, files=files)
        else:
            body = {
                **fields,
                "reference_urls": args.reference_url,
                "reference_output_ids": args.from_output,
            }
            detail = client.post("requests", json=body)
        return _follow(client, args, detail)


def show(args: Namespace) -> ExitCode:
    with connect(args) as client:
        detail = client.get(f"requests/{args.request_id}")
    if args.json:
        output.print_json(detail)
    else:
        output.print_request(detail)
    return ExitCode.OK


def list_requests(args: Namespace) -> ExitCode:
    wanted = None if args.all else args.limit
    filters = {"status": args.status, "mode": args.mode, "mine": "true" if args.mine else None}
    items: list[dict] = []
    cursor = args.cursor
    with connect(args) as client:
        while True:
            size = MAX_PAGE if wanted is None else min(MAX_PAGE, wanted - len(items))
            page = client.get("requests", {**filters, "cursor": cursor, "limit": size})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor or (wanted is not None and len(items) >= wanted):
                break
    if args.json:
        output.print_json({"items": items, "next_cursor": cursor})
    else:
        output.print_requests(items, more=bool(cursor))
    return ExitCode.OK


def batch(args: Namespace) -> ExitCode:
    rows = read_batch(Path(args.file))
    results = []
    columns = (TextColumn("Submitting rows"), BarColumn(), MofNCompleteColumn())
    with connect(args) as client, output.progress(*columns) as bar:
        task = bar.add_task("rows", total=len(rows))
        for row in rows:
            result = {"row": row.number, "prompt": row.body.get("prompt", ""), "request": None}
            if row.errors:
                result["errors"] = list(row.errors)
            else:
                try:
                    created = client.post(
                        "requests", json=row.body, idempotency_key=row.idempotency_key
                    )
                    result["request"] = {key: created[key] for key in ("id", "status", "url")}
                except CliError as error:
                    # Only a refusal belongs to the row; anything else stops the batch.
                    if error.exit_code != ExitCode.REFUSED:
                        raise CliError(
                            *error.lines,
                            f"Stopped at row {row.number}. Run the same file again to go on: "
                            "rows already created are not created twice.",
                            exit_code=error.exit_code,
                            status=error.status,
                        ) from error
                    result["errors"] = [line.strip() for line in error.lines]
            results.append(result)
            bar.advance(task)
    if args.json:
        output.print_json({"rows": results})
    else:
        output.print_batch(results)
    refused = any(result["request"] is None for result in results)
    return ExitCode.REFUSED if refused else ExitCode.OK


def download(args: Namespace) -> ExitCode:
    params = {"request": args.request}
    params["published" if args.published else "approved"] = "true"
    with connect(args) as client:
        outputs = library_outputs(client.pages("outputs", {**params, "limit": MAX_PAGE}))
        results = download_outputs(client, outputs, Path(args.directory))
    if args.json:
        output.print_json({"downloads": results})
    else:
        output.print_downloads(results, args.directory)
    return ExitCode.OK


def approve(args: Namespace) -> ExitCode:
    body = {"verdict": "approve", "comment": args.comment}
    return _decide(args, f"outputs/{args.output_id}/decision", body, "Approved")


def reject(args: Namespace) -> ExitCode:
    body = {"verdict": "reject", "reason": args.reason, "comment": args.comment}
    return _decide(args, f"outputs/{args.output_id}/decision", body, "Rejected")


def changes(args: Namespace) -> ExitCode:
    body = {
        "prompt": args.prompt,
        "comment": args.comment,
        "edit_from_output": args.edit_from_output,
        **_request_fields(args),
    }
    return _decide(args, f"outputs/{args.output_id}/changes", body, "Asked for changes to")


def _decide(args: Namespace, path: str, body: dict, done: str) -> ExitCode:
    with connect(args) as client:
        detail = client.post(path, json=body)
    if args.json:
        output.print_json(detail)
    else:
        output.out.print(
            f"{done} output {args.output_id}: request {detail['id']} "
            f"(revision {detail['revision']}) is {detail['status']}."
        )
    return ExitCode.OK


def _follow(client: ApiClient, args: Namespace, detail: dict) -> ExitCode:
    """After a create: wait and download if asked, then print the request."""
    if not args.json:
        output.err.print(f"Request {detail['id']} created ({detail['status']}): {detail['url']}")
    exit_code = ExitCode.OK
    if args.wait or args.download:
        detail = wait_for_review(client, detail["id"], timeout=args.timeout)
        exit_code = exit_code_after_waiting(detail)
    downloads = None
    if args.download:
        downloads = download_outputs(client, outputs_of(detail), Path(args.download))
    if args.json:
        output.print_json(detail if downloads is None else {**detail, "downloads": downloads})
    else:
        output.print_request(detail)
        if downloads is not None:
            output.print_downloads(downloads, args.download)
    return exit_code


def _request_fields(args: Namespace) -> dict[str, object]:
    return {
        field: getattr(args, option)
        for option, field in REQUEST_OPTIONS.items()
        if getattr(args, option, None) is not None
    }


def _form_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reference_file(path: str) -> tuple[str, bytes, str]:
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise CliError(
            f"Cannot read the reference {path}: {error.strerror}.", exit_code=ExitCode.USAGE
        ) from error
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Path(path).name, content, content_type


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise CliError("Pass the server's address with --url.", exit_code=ExitCode.USAGE)
    return input(prompt)
