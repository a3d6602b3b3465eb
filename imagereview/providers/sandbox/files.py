"""Files the sandbox hosts: task results, uploaded references, and the renders behind them."""

import hashlib
import mimetypes
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from . import render
from .config import DOWNLOAD_URL_TTL, FETCH_TIMEOUT, MAX_FILE_BYTES
from .wire import Rejection, Reply, Request, file_reply

if TYPE_CHECKING:
    from .engine import Task
    from .server import SandboxServer

# A photographic 4K render takes seconds and 19 MB: prompt-only tasks share this many at most
# per size and format.
PHOTO_PICTURES = 4
# Shared renders kept; tasks keep their own result, so an eviction costs a render, no memory.
RENDER_CACHE_ENTRIES = 256


class FetchError(Exception):
    pass


@dataclass
class Upload:
    content: bytes
    mime_type: str
    uploaded_at: str


class RenderCache:
    """Keep recent renders, and render each key once even when asked for it concurrently."""

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._renders: OrderedDict[Hashable, bytes] = OrderedDict()
        self._pending: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._renders:
                self._renders.move_to_end(key)
                return self._renders[key]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                if key in self._renders:
                    return self._renders[key]
            content = make()
            with self._lock:
                self._renders[key] = content
                self._pending.pop(key, None)
                while len(self._renders) > self._entries:
                    self._renders.popitem(last=False)
        return content


class Files:
    """Serve results and uploads, take uploads, fetch references, render results."""

    def __init__(self, sandbox: "SandboxServer", url: str, local_netlocs: set[str]) -> None:
        self._sandbox = sandbox
        self._url = url
        self._local_netlocs = local_netlocs
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._renders = RenderCache(RENDER_CACHE_ENTRIES)

    # Results

    def render(self, task: "Task") -> bytes:
        """Return the task's result image.

        Prompt-only tasks share `distinct_pictures` pictures per size and format when it is
        set, and at most PHOTO_PICTURES when they are photographic: each is rendered once,
        then served from memory.
        """
        params = task.input
        references = params.get("image_input") or []
        reference = self.fetch(references[0]) if references else None
        config = self._sandbox.config
        options = {
            "aspect_ratio": params.get("aspect_ratio", "1:1"),
            "resolution": params.get("resolution", "1K"),
            "output_format": task.extension,
            "texture": config.texture,
        }
        pictures = config.distinct_pictures
        if config.texture == "photo":
            pictures = min(pictures or PHOTO_PICTURES, PHOTO_PICTURES)
        if reference is not None or not pictures:
            return render.render(
                params["prompt"], reference=reference, variation=task.variation, **options
            )
        digest = hashlib.sha256(f"{params['prompt']}\x00{task.variation}".encode()).digest()
        prompt = f"sandbox picture {int.from_bytes(digest[:4]) % pictures + 1} of {pictures}"
        key = (prompt, *options.values())
        return self._renders.get(key, lambda: render.render(prompt, **options))

    def result_url(self, task: "Task") -> str:
        return f"{self._url}/files/results/{task.task_id}/0.{task.extension}"

    def download_url(self, url: Any) -> str:
        """A temporary link to a file this server hosts, valid DOWNLOAD_URL_TTL seconds."""
        path = self._own_path(url) if isinstance(url, str) else None
        if path is None or not path.startswith("/files/"):
            raise Rejection(422, "url is not a file hosted by this provider")
        if self._find_file(path) is None:
            raise Rejection(404, "file not found")
        expires = int(time.time()) + DOWNLOAD_URL_TTL
        return f"{self._url}{path}?t={expires}"

    def serve(self, request: Request) -> Reply:
        path = unquote(request.path)
        if path.startswith("/files/results/"):
            return self._serve_result(request, path)
        upload = self._find_upload(path)
        if upload is None:
            return file_reply(404, "not found")
        return Reply(content=upload.content, content_type=upload.mime_type)

    def _serve_result(self, request: Request, path: str) -> Reply:
        task = self._find_result(path)
        if task is None or task.result is None:
            return file_reply(404, "not found")
        now = time.time()
        if self._sandbox.engine.take_missing_once(task):
            return file_reply(404, "not found")
        expires = request.query.get("t", "")
        fresh_link = expires.isdigit() and now <= int(expires)
        expired = "result_expired" in task.faults or now > (task.completed or now) + (
            self._sandbox.config.result_ttl
        )
        if expired and not fresh_link:
            return file_reply(410, "this result URL has expired; ask for a download URL")
        return Reply(content=task.result, content_type=render.CONTENT_TYPES[task.extension])

    def _find_result(self, path: str) -> "Task | None":
        task_id, _, name = path.removeprefix("/files/results/").partition("/")
        task = self._sandbox.engine.find(task_id)
        if task is None or task.state != "success" or name != f"0.{task.extension}":
            return None
        return task

    def _find_file(self, path: str) -> bytes | None:
        if path.startswith("/files/results/"):
            task = self._find_result(path)
            return task.result if task else None
        upload = self._find_upload(path)
        return upload.content if upload else None

    def _find_upload(self, path: str) -> Upload | None:
        if not path.startswith("/files/uploads/"):
            return None
        return self._uploads.get(path.removeprefix("/files/uploads/"))

    def _own_path(self, url: str) -> str | None:
        """Return the decoded path of `url` when this server hosts it."""
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.netloc not in self._local_netlocs:
            return None
        return unquote(parts.path)

    # References

    def fetch(self, url: str) -> bytes:
        """Return the bytes behind a reference URL, from memory when it is one of ours."""
        path = self._own_path(url)
        if path is not None:
            content = self._find_file(path)
            if content is None:
                raise FetchError(f"{url} was not found")
            return content
        try:
            with self._sandbox.http.stream(
                "GET", url, timeout=FETCH_TIMEOUT, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise FetchError(f"{url} answered HTTP {response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_FILE_BYTES:
                        raise FetchError(f"{url} is larger than 30 MB")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise FetchError(f"{url} could not be fetched: {exc}") from exc
        return b"".join(chunks)

    # Uploads

    def store_upload(
        self, upload_path: Any, file_name: Any, content: bytes, *, mime_hint: str = ""
    ) -> dict[str, Any]:
        """Keep an uploaded file; return the contract's description of it."""
        if not isinstance(upload_path, str) or not upload_path.strip("/"):
            raise Rejection(422, "uploadPath is required")
        upload_path = upload_path.strip("/")
        if any(part in ("", ".", "..") for part in upload_path.split("/")):
            raise Rejection(422, "uploadPath must not contain empty, '.' or '..' segments")
        if file_name is not None and not isinstance(file_name, str):
            raise Rejection(422, "fileName must be a string")
        if file_name and ("/" in file_name or file_name in (".", "..")):
            raise Rejection(422, "fileName must be a plain file name")
        if len(content) > MAX_FILE_BYTES:
            raise Rejection(422, "file is larger than 30 MB")
        mime_type = _sniff(content) or mime_hint
        if not file_name:
            extension = mimetypes.guess_extension(mime_type or "") or ""
            file_name = f"{uuid.uuid4().hex}{extension}"
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        file_path = f"{upload_path}/{file_name}"
        uploaded_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self._uploads[file_path] = Upload(content, mime_type, uploaded_at)
        return {
            "fileName": file_name,
            "filePath": file_path,
            "downloadUrl": f"{self._url}/files/uploads/{quote(file_path)}",
            "fileSize": len(content),
            "mimeType": mime_type,
            "uploadedAt": uploaded_at,
        }


def _sniff(content: bytes) -> str:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return ""
