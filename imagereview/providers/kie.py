"""The httpx client for the Kie.ai Jobs API (Nano Banana Pro).

One client talks to both the real provider and the built-in sandbox. Every call checks the
JSON envelope's `code` (the HTTP status is 200 even on failure) and raises `ProviderError`,
which carries the classification from `errors.py`.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from imagereview.providers.downloads import tls_context
from imagereview.providers.errors import BAD_ENVELOPE, TRANSPORT_ERROR, ProviderError

PENDING_STATES = frozenset({"waiting", "queuing", "generating"})
FINAL_STATES = frozenset({"success", "fail"})
# The contract's deepest document (a callback body) nests four levels.
MAX_JSON_DEPTH = 32
# Printable ASCII without spaces, as long as the field that keeps it.
TASK_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Credits of one task, and a wait the provider may ask for, beyond which an answer is garbled.
MAX_TASK_CREDITS = Decimal(100_000)
MAX_RETRY_AFTER = 3600.0
# Nano Banana Pro makes one image per task; a longer list is no answer to trust in full.
MAX_RESULT_URLS = 8


@dataclass(frozen=True)
class TaskRecord:
    """The provider's view of one task, from recordInfo or a callback body."""

    task_id: str
    state: str
    result_urls: list[str] = field(default_factory=list)
    fail_code: str = ""
    fail_message: str = ""
    credits: Decimal | None = None
    callback_url: str = ""
    complete_time_ms: int | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class UploadedFile:
    download_url: str
    file_path: str
    size: int


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def loads_bounded(text: str | bytes) -> Any:
    """Decode JSON from a stranger or the provider, or raise ValueError.

    Refuses what standard JSON refuses, NaN and Infinity, and any document nested deeper
    than MAX_JSON_DEPTH: the decoder's own recursion is caught where it gives up, and a
    shallower document that is still too deep is refused before anything walks it.
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as error:
        raise ValueError("nested too deeply") from error
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError("nested too deeply")
    return value


def _depth(value: Any) -> int:
    """How deeply a decoded document nests, found without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)
    return deepest


def _loads_maybe(value: Any) -> Any:
    """Decode a field the provider sends as a JSON string (or, defensively, as JSON)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            return loads_bounded(value)
        except ValueError:
            return {}
    return value or {}


def valid_task_id(value: Any) -> str:
    """The value as a task id, or "" when it cannot be one (a name we would store and query)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and TASK_ID.fullmatch(value) else ""


def _finite_decimal(value: Any) -> Decimal | None:
    """A number the provider sent (as a number or a string), or None if it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _credits(data: Mapping[str, Any]) -> Decimal | None:
    for key in ("creditsConsumed", "consumeCredits"):
        if data.get(key) is not None:
            credits = _finite_decimal(data[key])
            return credits if credits is not None and 0 <= credits <= MAX_TASK_CREDITS else None
    return None


def parse_task(data: Mapping[str, Any]) -> TaskRecord:
    """Read a recordInfo `data` object (or a callback's) defensively."""
    task_id = valid_task_id(data.get("taskId")) or valid_task_id(data.get("task_id"))
    results = _loads_maybe(data.get("resultJson"))
    urls = results.get("resultUrls") if isinstance(results, dict) else None
    param = _loads_maybe(data.get("param"))
    callback_url = param.get("callBackUrl") if isinstance(param, dict) else None
    return TaskRecord(
        task_id=task_id,
        state=_text(data.get("state"), 16),
        result_urls=[
            url
            for url in (urls if isinstance(urls, list) else [])
            if isinstance(url, str) and _text(url, 4000) == url
        ][:MAX_RESULT_URLS],
        fail_code=_text(data.get("failCode"), 16),
        fail_message=_text(data.get("failMsg"), 2000),
        credits=_credits(data),
        callback_url=callback_url if _text(callback_url, 4000) == callback_url else "",
        complete_time_ms=_milliseconds(data.get("completeTime")),
    )


def _text(value: Any, limit: int) -> str:
    """A scalar the provider sent as text we can store: no NUL (PostgreSQL refuses it), bounded."""
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).replace("\x00", "")[:limit]


def _milliseconds(value: Any) -> int | None:
    """A moment in Unix milliseconds, if the value can be one (not NaN, not past year 9999)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if 0 <= value < 253_402_300_800_000 else None


def callback_task_id(body: Mapping[str, Any]) -> str:
    """Find the task id in a callback body, wherever the sender put it; "" if it is no id."""
    data = body.get("data") if isinstance(body.get("data"), Mapping) else {}
    for value in (data.get("taskId"), data.get("task_id"), body.get("taskId")):
        if task_id := valid_task_id(value):
            return task_id
    return ""


def callback_signature(key: str, task_id: str, timestamp: str) -> str:
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_callback_signature(
    *,
    key: str,
    task_id: str,
    timestamp: str,
    signature: str,
    tolerance: int,
    now: float | None = None,
) -> bool:
    """Check a callback's HMAC headers in constant time, within a freshness window."""
    if not (task_id and timestamp and signature):
        return False
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    if age > tolerance:
        return False
    # As bytes: on a str holding anything but ASCII compare_digest raises instead of refusing.
    expected = callback_signature(key, task_id, timestamp).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class KieClient:
    def __init__(
        self,
        *,
        api_base: str,
        upload_base: str,
        api_key: str,
        model: str = "nano-banana-pro",
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        headers = {"Authorization": f"Bearer {api_key}"}
        # As the contract asks, on every API call (GETs included); never on the upload
        # client, whose multipart bodies carry their own.
        self._api = httpx.Client(
            base_url=api_base,
            headers={**headers, "Content-Type": "application/json"},
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
        )
        self._upload = httpx.Client(
            base_url=upload_base,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
        )

    def close(self) -> None:
        self._api.close()
        self._upload.close()

    def __enter__(self) -> "KieClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_task(
        self,
        *,
        prompt: str,
        aspect_ratio: str,
        resolution: str,
        output_format: str,
        image_urls: list[str] | None = None,
        callback_url: str = "",
    ) -> str:
        """Create a task and return its taskId. A 200 means accepted, never done."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": {
                "prompt": prompt,
                "image_input": list(image_urls or []),
                "aspect_ratio": aspect_ratio,
                "resolution": resolution,
                "output_format": output_format,
            },
        }
        if callback_url:
            body["callBackUrl"] = callback_url
        data = self._call(self._api, "POST", "/api/v1/jobs/createTask", json=body, creates=True)
        task_id = valid_task_id(data.get("taskId")) if isinstance(data, Mapping) else ""
        if not task_id:
            # Accepted, by the envelope: a task may exist that we cannot name.
            raise ProviderError(
                BAD_ENVELOPE, "createTask answered without a taskId", ambiguous=True
            )
        return task_id

    def record_info(self, task_id: str) -> TaskRecord:
        data = self._call(self._api, "GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id})
        if not isinstance(data, Mapping):
            raise ProviderError(BAD_ENVELOPE, "recordInfo answered without data")
        return parse_task(data)

    def credit_balance(self) -> Decimal:
        data = self._call(self._api, "GET", "/api/v1/chat/credit")
        balance = _finite_decimal(data)
        if balance is None:
            raise ProviderError(BAD_ENVELOPE, f"credit answered {_text(repr(data), 100)}")
        return balance

    def fresh_download_url(self, url: str) -> str:
        data = self._call(self._api, "POST", "/api/v1/common/download-url", json={"url": url})
        if not isinstance(data, str) or not data:
            raise ProviderError(BAD_ENVELOPE, "download-url answered without a URL")
        return data

    def upload_file(
        self, *, content: bytes, file_name: str, content_type: str, upload_path: str
    ) -> UploadedFile:
        """Host a reference image on the provider (free, deleted after 3 days)."""
        data = self._call(
            self._upload,
            "POST",
            "/api/file-stream-upload",
            files={"file": (file_name, content, content_type)},
            data={"uploadPath": upload_path.strip("/"), "fileName": file_name},
        )
        url = data.get("downloadUrl") if isinstance(data, Mapping) else None
        if not isinstance(url, str) or not url:
            raise ProviderError(BAD_ENVELOPE, "upload answered without a downloadUrl")
        size = data.get("fileSize")
        return UploadedFile(
            download_url=url,
            file_path=_text(data.get("filePath"), 500),
            size=size if isinstance(size, int) and not isinstance(size, bool) else len(content),
        )

    def _call(
        self, client: httpx.Client, method: str, path: str, *, creates: bool = False, **kwargs: Any
    ) -> Any:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            # A create that timed out after sending may have made a task all the same.
            sent = not isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise ProviderError(
                TRANSPORT_ERROR, f"timed out: {error}", ambiguous=creates and sent
            ) from error
        except httpx.TransportError as error:
            sent = not isinstance(error, httpx.ConnectError)
            raise ProviderError(
                TRANSPORT_ERROR, f"transport error: {error}", ambiguous=creates and sent
            ) from error
        return _unwrap(response, creates=creates)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, given as seconds or as an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    # NaN (which compares false) or a wait of days is no advice to follow: the caller's own
    # backoff applies.
    if not seconds <= MAX_RETRY_AFTER:
        return None
    return max(0.0, seconds)


def _unwrap(response: httpx.Response, *, creates: bool = False) -> Any:
    """Return the envelope's `data`, or raise what its `code` (or the HTTP status) means."""
    try:
        envelope = loads_bounded(response.content)
    except ValueError:
        envelope = None
    code = envelope.get("code") if isinstance(envelope, Mapping) else None
    # A code is an HTTP-like status: anything else is as garbled as no envelope at all.
    if type(code) is not int or not 100 <= code <= 999:
        code = response.status_code if response.status_code != 200 else BAD_ENVELOPE
        text = _text(response.text[:200].strip() or response.reason_phrase, 200)
        raise ProviderError(
            code,
            f"no valid envelope: {text}",
            retry_after=_retry_after(response),
            # Not the provider's own answer (a proxy's 502, a garbled 200): a create may
            # have gone through. A 429 is a refusal, whoever sent it.
            ambiguous=creates and code != 429,
        )
    if response.status_code != 200 and code == 200:
        code = response.status_code
    if code != 200:
        message = _text(envelope.get("msg") or envelope.get("message"), 500)
        raise ProviderError(code, message, retry_after=_retry_after(response))
    return envelope.get("data")


def _client_options() -> dict[str, Any]:
    """The configured provider's client settings (the sandbox's when no key is set)."""
    from django.conf import settings

    return {
        "api_base": settings.KIE_API_BASE,
        "upload_base": settings.KIE_UPLOAD_BASE,
        "api_key": settings.KIE_API_KEY,
        "model": settings.KIE_MODEL,
        "connect_timeout": settings.KIE_CONNECT_TIMEOUT,
        "read_timeout": settings.KIE_READ_TIMEOUT,
    }


_shared: dict[tuple, KieClient] = {}


def shared_client() -> KieClient:
    """This process's client for the configured provider, kept for every job it runs.

    Making a client costs more than most calls it makes (the TLS context, the connection);
    keeping one also keeps its connections alive between jobs. A forked worker makes its own,
    as sockets must not be shared across processes; a change of settings makes a new one.
    """
    options = _client_options()
    key = (os.getpid(), *options.values())
    client = _shared.get(key)
    if client is None:
        for (pid, *_), stale in _shared.items():
            if pid == os.getpid():
                stale.close()  # another process's client is only forgotten
        _shared.clear()
        client = _shared[key] = KieClient(**options)
    return client
