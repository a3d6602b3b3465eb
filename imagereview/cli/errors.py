"""The exit codes scripts can test, and the one error type that carries them."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # Only with --wait: the request ended failed or rejected.
    REQUEST_FAILED = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    REFUSED = 5
    UNREACHABLE = 6
    WAIT_TIMED_OUT = 7


class CliError(Exception):
    """A problem to tell the user, one line per item, and the exit code it ends with."""

    def __init__(self, *lines: str, exit_code: ExitCode, status: int | None = None) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines
        self.exit_code = exit_code
        self.status = status
