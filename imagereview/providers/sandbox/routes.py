"""The contract's HTTP routes: dispatch, auth, request parsing and the handlers behind them."""

import base64
import binascii
import dataclasses
import hmac
import logging
import posixpath
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .config import (
    ASPECT_RATIOS,
    MAX_FILE_BYTES,
    MAX_JSON_BYTES,
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    MAX_UPLOAD_BODY_BYTES,
    MODEL,
    OUTPUT_FORMATS,
    RESOLUTIONS,
)
from .files import FetchError
from .wire import Rejection, Reply, Request, envelope

if TYPE_CHECKING:
    from .server import SandboxServer

logger = logging.getLogger("imagereview.sandbox")


@dataclass
class Route:
    handler: Callable[[Request], Reply]
    auth: bool = True
    body_limit: int = MAX_JSON_BYTES


class Router:
    """Answer requests by method and path, counting the calls to the contract's API."""

    def __init__(self, sandbox: "SandboxServer") -> None:
        self._sandbox = sandbox
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._answered_429: Counter[str] = Counter()
        self._routes: dict[tuple[str, str], Route] = {
            ("POST", "/api/v1/jobs/createTask"): Route(self._create_task),
            ("GET", "/api/v1/jobs/recordInfo"): Route(self._record_info),
            ("GET", "/api/v1/chat/credit"): Route(self._credit),
            ("POST", "/api/v1/common/download-url"): Route(self._download_url),
            ("POST", "/api/file-stream-upload"): Route(
                self._stream_upload, body_limit=MAX_FILE_BYTES + 64 * 1024
            ),
            ("POST", "/api/file-base64-upload"): Route(
                self._base64_upload, body_limit=MAX_UPLOAD_BODY_BYTES
            ),
            ("POST", "/api/file-url-upload"): Route(self._url_upload),
            ("GET", "/sandbox/config"): Route(self._get_config, auth=False),
            ("POST", "/sandbox/config"): Route(self._set_config, auth=False),
            ("GET", "/sandbox/tasks"): Route(self._list_tasks, auth=False),
            ("GET", "/sandbox/stats"): Route(self._get_stats, auth=False),
        }

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Calls answered per path, and how many of them were 429s."""
        with self._lock:
            return {"calls": dict(self._calls), "answered_429": dict(self._answered_429)}

    def handle(
        self, method: str, target: str, headers: Message, read_body: Callable[[int], bytes]
    ) -> Reply:
        """Answer one HTTP request, counting it."""
        reply = self._answer(method, target, headers, read_body)
        path = urlsplit(target).path
        if path.startswith("/api/"):
            with self._lock:
                self._calls[path] += 1
                if reply.code == 429 or reply.status == 429:
                    self._answered_429[path] += 1
        return reply

    def _answer(
        self, method: str, target: str, headers: Message, read_body: Callable[[int], bytes]
    ) -> Reply:
        parts = urlsplit(target)
        path = parts.path
        request = Request(method, path, dict(parse_qsl(parts.query)), headers)
        try:
            if method == "GET" and path.startswith("/files/"):
                return self._sandbox.files.serve(request)
            route = self._routes.get((method, path))
            request.body = read_body(route.body_limit if route else MAX_JSON_BYTES)
            if route is None:
                if any(known == path for _, known in self._routes):
                    return envelope(405, "method not allowed", status=405)
                return envelope(404, "not found", status=404)
            if route.auth:
                self._check_auth(headers)
            return route.handler(request)
        except Rejection as rejection:
            reply = envelope(rejection.code, rejection.msg, status=rejection.status)
            reply.headers.update(rejection.headers)
            return reply
        except Exception:
            logger.exception("sandbox failed on %s %s", method, target)
            return envelope(500, "Internal server error", status=500)

    def _check_auth(self, headers: Message) -> None:
        expected = f"Bearer {self._sandbox.config.api_key}".encode()
        given = (headers.get("Authorization") or "").strip().encode()
        if not hmac.compare_digest(given, expected):
            raise Rejection(401, "You do not have access permissions")

    # Jobs API

    def _create_task(self, request: Request) -> Reply:
        self._sandbox.dice.fail_request(self._sandbox.config)
        body = request.json()
        _validate_create(body)
        task = self._sandbox.engine.create(body)
        return envelope(200, "success", {"taskId": task.task_id})

    def _record_info(self, request: Request) -> Reply:
        self._sandbox.dice.fail_request(self._sandbox.config)
        engine = self._sandbox.engine
        engine.take_query_slot()
        task_id = request.query.get("taskId", "")
        if not task_id:
            raise Rejection(400, "taskId is required")
        task = engine.find(task_id)
        if task is None:
            raise Rejection(404, f"task {task_id} not found")
        return envelope(200, "success", engine.record(task))

    def _credit(self, request: Request) -> Reply:
        return envelope(200, "success", _number(self._sandbox.engine.balance))

    def _download_url(self, request: Request) -> Reply:
        url = request.json().get("url")
        return envelope(200, "success", self._sandbox.files.download_url(url))

    # Uploads

    def _stream_upload(self, request: Request) -> Reply:
        fields = _parse_multipart(request.headers.get("Content-Type", ""), request.body)
        if "file" not in fields:
            raise Rejection(422, "file is required")
        filename, content = fields["file"]
        name = _text(fields.get("fileName")) or filename
        return self._uploaded(_text(fields.get("uploadPath")), name, content)

    def _base64_upload(self, request: Request) -> Reply:
        payload = request.json()
        data = payload.get("base64Data")
        if not isinstance(data, str) or not data:
            raise Rejection(422, "base64Data is required")
        hint = ""
        if data.startswith("data:"):
            header, _, data = data.partition(",")
            hint = header.removeprefix("data:").split(";")[0]
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Rejection(422, "base64Data is not valid base64") from exc
        return self._uploaded(
            payload.get("uploadPath"), payload.get("fileName"), content, mime_hint=hint
        )

    def _url_upload(self, request: Request) -> Reply:
        payload = request.json()
        url = payload.get("fileUrl")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise Rejection(422, "fileUrl must be an http(s) URL")
        try:
            content = self._sandbox.files.fetch(url)
        except FetchError as exc:
            raise Rejection(422, f"fileUrl: {exc}") from exc
        name = payload.get("fileName") or posixpath.basename(urlsplit(url).path)
        return self._uploaded(payload.get("uploadPath"), name, content)

    def _uploaded(
        self, upload_path: Any, file_name: Any, content: bytes, *, mime_hint: str = ""
    ) -> Reply:
        data = self._sandbox.files.store_upload(
            upload_path, file_name, content, mime_hint=mime_hint
        )
        reply = envelope(200, "File uploaded successfully", data)
        reply.payload["success"] = True
        return reply

    # The sandbox's own control routes

    def _get_config(self, request: Request) -> Reply:
        return envelope(200, "success", dataclasses.asdict(self._sandbox.config))

    def _set_config(self, request: Request) -> Reply:
        try:
            self._sandbox.configure(**request.json())
        except ValueError as exc:
            raise Rejection(422, str(exc)) from exc
        return self._get_config(request)

    def _get_stats(self, request: Request) -> Reply:
        return envelope(200, "success", self.stats)

    def _list_tasks(self, request: Request) -> Reply:
        return envelope(200, "success", self._sandbox.tasks)


def _validate_create(body: dict[str, Any]) -> None:
    if body.get("model") != MODEL:
        raise Rejection(422, f"model must be {MODEL!r}")
    callback = body.get("callBackUrl")
    if callback is not None and not _is_http_url(callback):
        raise Rejection(422, "callBackUrl must be an http(s) URL")
    params = body.get("input")
    if not isinstance(params, dict):
        raise Rejection(422, "input is required and must be an object")
    prompt = params.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Rejection(422, "input.prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise Rejection(422, f"input.prompt must be at most {MAX_PROMPT_CHARS} characters")
    for name, allowed in (
        ("aspect_ratio", ASPECT_RATIOS),
        ("resolution", RESOLUTIONS),
        ("output_format", OUTPUT_FORMATS),
    ):
        if name in params and params[name] not in allowed:
            raise Rejection(422, f"input.{name} must be one of {', '.join(allowed)}")
    references = params.get("image_input")
    if references is None:
        references = []
    if (
        not isinstance(references, list)
        or len(references) > MAX_REFERENCES
        or not all(_is_http_url(url) for url in references)
    ):
        raise Rejection(
            422, f"input.image_input must be a list of at most {MAX_REFERENCES} http(s) URLs"
        )


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https")


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """Return {field name: (file name, content)} for a multipart/form-data body."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise Rejection(422, "body must be multipart/form-data")
    fields: dict[str, tuple[str, bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "content-disposition":
                disposition["Content-Disposition"] = value.strip()
        field_name = disposition.get_param("name", header="Content-Disposition")
        filename = disposition.get_param("filename", "", header="Content-Disposition")
        if field_name:
            fields[collapse_rfc2231_value(field_name)] = (
                collapse_rfc2231_value(filename),
                content.removesuffix(b"\r\n"),
            )
    return fields


def _text(field: tuple[str, bytes] | None) -> str:
    return field[1].decode("utf-8", "replace").strip() if field else ""


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value
