"""The HTTP client of the JSON API: retries, one Idempotency-Key per command, problem details.

A create is retried only with the same Idempotency-Key and the same body, so the server
answers a retry with the first answer instead of creating the work again.
"""

import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from imagereview.cli.config import Connection
from imagereview.cli.errors import CliError, ExitCode

ATTEMPTS = 4
RETRY_BASE_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
RETRIED_STATUSES = {429, 502, 503, 504}
PROBLEM_BASE = "https://imagereview.invalid/problems/"
EXIT_CODES = {
    401: ExitCode.AUTH,
    403: ExitCode.AUTH,
    404: ExitCode.NOT_FOUND,
    400: ExitCode.REFUSED,
    409: ExitCode.REFUSED,
    413: ExitCode.REFUSED,
    422: ExitCode.REFUSED,
}


class _BearerToken(httpx.Auth):
    """Send the token to the server it belongs to only, never to a storage host a download
    URL may point at."""

    def __init__(self, token: str, origin: httpx.URL) -> None:
        self.token = token
        self.origin = (origin.scheme, origin.host, origin.port)

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if (request.url.scheme, request.url.host, request.url.port) == self.origin:
            request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class ApiClient:
    """One command's conversation with the server."""

    def __init__(
        self,
        connection: Connection,
        *,
        idempotency_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = connection.url
        self.idempotency_key = idempotency_key or uuid.uuid4().hex
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1/",
            auth=_BearerToken(connection.token, httpx.URL(self.url)),
            headers={"Accept": "application/json", "User-Agent": "imagereview-cli"},
            timeout=TIMEOUT,
            transport=transport,
        )

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict:
        given = {key: value for key, value in (params or {}).items() if value is not None}
        return self._json(self._send("GET", path, params=given))

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[dict]:
        """Every item of a listing, page after page, following `next_cursor`."""
        cursor = None
        while True:
            page = self.get(path, {**params, "cursor": cursor})
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def post(
        self,
        path: str,
        *,
        json: dict | None = None,
        data: dict[str, Any] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """POST with an Idempotency-Key, the command's own unless one is given."""
        key = idempotency_key or self.idempotency_key
        headers = {"Idempotency-Key": key}
        response = self._send("POST", path, json=json, data=data, files=files, headers=headers)
        return self._json(response)

    def download(self, url: str, target: Path) -> tuple[str, str]:
        """Save the file at `url` (relative to the API or absolute) to `target`; return the
        SHA-256 of what was written and its content type."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                # A stored file may be answered with a redirect to a signed link in a bucket.
                with self._http.stream("GET", url, follow_redirects=True) as response:
                    if response.status_code >= 400 or _is_json(response):
                        response.read()
                        if response.status_code in RETRIED_STATUSES and attempt < ATTEMPTS:
                            self._sleep(_delay(attempt, response))
                            continue
                        self._json(response)
                        raise self._not_the_api(response)
                    digest = hashlib.sha256()
                    with target.open("wb") as file:
                        for chunk in response.iter_bytes():
                            digest.update(chunk)
                            file.write(chunk)
                    content_type = response.headers.get("content-type", "")
                    return digest.hexdigest(), content_type.split(";")[0].strip()
            except httpx.TransportError as error:
                if attempt == ATTEMPTS:
                    raise self._unreachable(error) from error
                self._sleep(_delay(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if attempt == ATTEMPTS:
                    raise self._unreachable(error) from error
                self._sleep(_delay(attempt))
                continue
            if attempt == ATTEMPTS or not _worth_retrying(response):
                return response
            self._sleep(_delay(attempt, response))
        raise AssertionError("unreachable: the last attempt returns")

    def _json(self, response: httpx.Response) -> dict:
        if not _is_json(response):
            raise self._not_the_api(response)
        try:
            body = response.json()
        except ValueError as error:
            raise self._not_the_api(response) from error
        if response.status_code >= 400:
            raise self._problem(response, body if isinstance(body, dict) else {})
        return body

    def _problem(self, response: httpx.Response, problem: dict) -> CliError:
        status = response.status_code
        detail = problem.get("detail") or problem.get("title") or response.reason_phrase
        lines = [str(detail)]
        for field, messages in (problem.get("errors") or {}).items():
            for message in messages if isinstance(messages, list) else [messages]:
                lines.append(f"  {field}: {message}")
        if status == 401:
            lines.insert(0, f"The token was refused: create one at {self.url}/account/tokens/")
        elif status == 429:
            lines.append("The server is still limiting this token's rate; try again later.")
        exit_code = EXIT_CODES.get(status, ExitCode.UNREACHABLE)
        return CliError(*lines, exit_code=exit_code, status=status)

    def _not_the_api(self, response: httpx.Response) -> CliError:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return CliError(
            f"This does not look like an imagereview server: {response.request.url} answered "
            f"{response.status_code} {response.reason_phrase} with {kind}, not the API's JSON.",
            f"Check the URL ({self.url}): it should be the site's address.",
            exit_code=ExitCode.UNREACHABLE,
            status=response.status_code,
        )

    def _unreachable(self, error: httpx.TransportError) -> CliError:
        reason = str(error) or type(error).__name__
        return CliError(
            f"Cannot reach the server at {self.url}: {reason}.",
            "Check the URL (--url, IMAGEREVIEW_URL or `imagereview login`) and that the "
            "server is running.",
            exit_code=ExitCode.UNREACHABLE,
        )


def _is_json(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    return kind in ("application/json", "application/problem+json")


def _worth_retrying(response: httpx.Response) -> bool:
    if response.status_code in RETRIED_STATUSES:
        return True
    # Another attempt with this key is still being answered: its answer will be replayed.
    return response.status_code == 409 and _problem_type(response) == "idempotency-in-progress"


def _problem_type(response: httpx.Response) -> str:
    if not _is_json(response):
        return ""
    try:
        problem_type = response.json().get("type", "")
    except (ValueError, AttributeError):
        return ""
    return str(problem_type).removeprefix(PROBLEM_BASE)


def _delay(attempt: int, response: httpx.Response | None = None) -> float:
    """Retry-After when the server says so, else exponential backoff with jitter."""
    if response is not None:
        try:
            return min(float(response.headers["Retry-After"]), MAX_RETRY_DELAY)
        except (KeyError, ValueError):
            pass
    backoff = RETRY_BASE_DELAY * 2 ** (attempt - 1)
    return min(backoff, MAX_RETRY_DELAY) * random.uniform(0.5, 1.0)
