"""`--wait`: follow a request until a person can review it or it has ended."""

import time

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from imagereview.cli.client import ApiClient
from imagereview.cli.errors import CliError, ExitCode
from imagereview.cli.output import progress

FIRST_POLL_DELAY = 0.5
MAX_POLL_DELAY = 10.0
ENDED_BADLY = {"failed", "rejected"}


def wait_for_review(
    client: ApiClient,
    request_id: int,
    *,
    timeout: float,
) -> dict:
    """Poll the request, backing off, until it is no longer generating; return its detail.

    Raise a CliError with exit code WAIT_TIMED_OUT if that takes longer than `timeout`.
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_POLL_DELAY
    columns = (
        TextColumn("Request {task.fields[request]}: {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("generations stored"),
        TimeElapsedColumn(),
    )
    with progress(*columns) as display:
        task = display.add_task("generating", total=None, request=request_id)
        while True:
            detail = client.get(f"requests/{request_id}")
            generations = detail["generations"]
            stored = sum(1 for generation in generations if generation["state"] == "stored")
            display.update(
                task,
                description=detail["status"],
                completed=stored,
                total=len(generations) or detail["variants"],
            )
            if detail["status"] != "generating":
                return detail
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(
                    f"Request {request_id} is still generating after {timeout:g} seconds "
                    f"({stored} of {len(generations)} generations stored).",
                    f"It goes on on the server: `imagereview show {request_id}` follows it.",
                    exit_code=ExitCode.WAIT_TIMED_OUT,
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, MAX_POLL_DELAY)


def exit_code_after_waiting(detail: dict) -> ExitCode:
    return ExitCode.REQUEST_FAILED if detail["status"] in ENDED_BADLY else ExitCode.OK
