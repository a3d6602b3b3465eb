"""The `imagereview` command line: arguments, dispatch, and exit codes.

Exit codes: 0 ok; 1 the awaited request ended failed or rejected; 2 usage error; 3 the
token was refused or lacks the permission (401, 403); 4 not found; 5 the server refused the
input (422, 409, 413); 6 the server could not be reached, did not look like imagereview, or
failed (5xx); 7 timed out waiting.
"""

import argparse
from collections.abc import Callable, Sequence

from imagereview.cli import commands
from imagereview.cli.errors import CliError, ExitCode
from imagereview.cli.output import print_problem

DEFAULT_WAIT_SECONDS = 900.0


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # argparse has printed the usage or the help.
        return stop.code if isinstance(stop.code, int) else ExitCode.USAGE
    try:
        return int(args.command(args))
    except CliError as error:
        print_problem(error.lines)
        return int(error.exit_code)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the site's address (else IMAGEREVIEW_URL or the config)")
    common.add_argument("--token", help="an API token (else IMAGEREVIEW_TOKEN or the config)")
    common.add_argument("--json", action="store_true", help="print the API's JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="imagereview",
        description="Send image requests to an imagereview server, follow them, review "
        "their outputs and download the results.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], ExitCode], summary: str, *parents
    ) -> argparse.ArgumentParser:
        sub = subcommands.add_parser(
            name, help=summary, description=summary, parents=[common, *parents]
        )
        sub.set_defaults(command=handler)
        return sub

    command("login", commands.login, "check a URL and token, then store them in the config")
    command("whoami", commands.whoami, "show who the token belongs to, its scopes and limits")

    parameters = argparse.ArgumentParser(add_help=False)
    group = parameters.add_argument_group("image parameters (the server's defaults if omitted)")
    group.add_argument("--aspect-ratio", help="e.g. 1:1, 4:3, 16:9, auto")
    group.add_argument("--resolution", help="1K, 2K or 4K")
    group.add_argument("--format", dest="output_format", help="png or jpg")
    group.add_argument("--variants", type=int, help="how many images to generate")

    creating = argparse.ArgumentParser(add_help=False)
    review = creating.add_argument_group("review")
    review.add_argument("--approvals", type=int, help="approvals each output needs")
    review.add_argument("--quota", type=int, help="approved outputs that approve the request")
    review.add_argument(
        "--auto-publish",
        action=argparse.BooleanOptionalAction,
        help="publish outputs as soon as they are approved (default: as the site is set up)",
    )
    review.add_argument(
        "--due", help="when the review is due: 2026-12-24 (that day's end) or 2026-12-24T17:00"
    )
    review.add_argument("--priority", choices=["low", "normal", "high", "urgent"])
    follow = creating.add_argument_group("following the request")
    follow.add_argument(
        "--wait", action="store_true", help="show progress until the request is in review"
    )
    follow.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help=f"seconds to wait at most (default {DEFAULT_WAIT_SECONDS:g}); exit code 7 after",
    )
    follow.add_argument("--download", metavar="DIR", help="wait, then save the outputs into DIR")

    sub = command(
        "generate", commands.generate, "request images from a prompt", parameters, creating
    )
    sub.add_argument("prompt")

    sub = command("edit", commands.edit, "request edits of reference images", parameters, creating)
    sub.add_argument("prompt")
    refs = sub.add_argument_group("references (at least one)")
    refs.add_argument(
        "--reference",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="an image file to upload",
    )
    refs.add_argument(
        "--reference-url",
        nargs="+",
        action="extend",
        default=[],
        metavar="URL",
        help="an image URL for the server to fetch",
    )
    refs.add_argument(
        "--from-output",
        nargs="+",
        action="extend",
        default=[],
        type=int,
        metavar="ID",
        help="an earlier output",
    )

    sub = command("show", commands.show, "show a request, its outputs and decisions")
    sub.add_argument("request_id", type=int, metavar="ID")

    sub = command("list", commands.list_requests, "list requests, newest first")
    sub.add_argument("--status", help="e.g. generating, in_review, approved, failed")
    sub.add_argument("--mode", choices=["generate", "edit"])
    sub.add_argument("--mine", action="store_true", help="only my own requests")
    sub.add_argument("--limit", type=positive, default=20, help="how many to show (default 20)")
    sub.add_argument("--all", action="store_true", help="show every request, page after page")
    sub.add_argument("--cursor", help="continue from a listing's next_cursor")

    sub = command("batch", commands.batch, "submit one request per row of a CSV file")
    sub.add_argument("file", metavar="FILE.csv")

    sub = command("download", commands.download, "save approved or published outputs")
    sub.add_argument("directory", metavar="DIR")
    sub.add_argument("--request", type=int, metavar="ID", help="only this request's outputs")
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--approved", action="store_true", help="approved outputs (default)")
    which.add_argument("--published", action="store_true", help="published outputs only")

    sub = command("approve", commands.approve, "approve an output")
    sub.add_argument("output_id", type=int, metavar="OUTPUT_ID")
    sub.add_argument("--comment", default="")

    sub = command("reject", commands.reject, "reject an output, with a reason")
    sub.add_argument("output_id", type=int, metavar="OUTPUT_ID")
    sub.add_argument(
        "--reason",
        required=True,
        help="prompt, artefacts, text, off_brand, size, unsafe or other",
    )
    sub.add_argument("--comment", default="")

    sub = command(
        "changes", commands.changes, "ask for a revision with an edited prompt", parameters
    )
    sub.add_argument("output_id", type=int, metavar="OUTPUT_ID")
    sub.add_argument("--prompt", required=True, help="the revised prompt")
    sub.add_argument("--comment", default="")
    sub.add_argument(
        "--edit-from-output",
        action="store_true",
        help="edit this output instead of generating afresh",
    )
    return parser
