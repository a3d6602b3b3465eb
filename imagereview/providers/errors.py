"""Provider errors, classified once by the codes table of the Kie contract."""

from enum import StrEnum


class Action(StrEnum):
    """What the caller does about a failed provider call."""

    RETRY = "retry"  # try again later, with backoff
    HALT = "halt"  # stop submitting for the whole account until an admin or a check clears it
    FAIL = "fail"  # give up on this one call or task; show the message to its requester


CODE_ACTIONS: dict[int, Action] = {
    401: Action.HALT,
    402: Action.HALT,
    404: Action.FAIL,
    422: Action.FAIL,
    429: Action.RETRY,
    433: Action.HALT,
    455: Action.RETRY,
    500: Action.RETRY,
    501: Action.FAIL,
    505: Action.HALT,
}

CODE_MEANINGS: dict[int, str] = {
    400: "bad request",
    401: "bad or missing API key",
    402: "insufficient credits",
    404: "unknown task or path",
    422: "request failed validation",
    429: "rate limited",
    433: "sub-key usage quota exceeded",
    455: "provider under maintenance",
    500: "provider error",
    501: "generation failed",
    505: "feature disabled",
}


def classify(code: int) -> Action:
    """Map an envelope or HTTP status code to what we do about it."""
    if code in CODE_ACTIONS:
        return CODE_ACTIONS[code]
    if code >= 500:
        return Action.RETRY
    return Action.FAIL


class ProviderError(Exception):
    """A provider call that did not succeed.

    `ambiguous` is set when the request may have reached the provider and taken effect
    (a timeout or dropped connection after sending): a createTask may then have made a
    billable task that we do not know the id of.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.ambiguous = ambiguous
        self.action = classify(code)
        super().__init__(f"{code} {message}")

    @property
    def meaning(self) -> str:
        return CODE_MEANINGS.get(self.code, "unexpected answer")


# Codes we give transport-level trouble so that it classifies like the provider's own.
TRANSPORT_ERROR = 599
BAD_ENVELOPE = 598
