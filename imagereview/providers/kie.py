"""The httpx client for the Kie.ai Jobs API (Nano Banana Pro).

One client talks to both the real provider and the built-in sandbox. Every call checks the
JSON envelope's `code` (the HTTP status is 200 even on failure) and raises `ProviderError`,
which carries the classification from `errors.py`.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from imagereview.providers.errors import BAD_ENVELOPE, TRANSPORT_ERROR, ProviderError

PENDING_STATES = frozenset({"waiting", "queuing", "generating"})
FINAL_STATES = frozenset({"success", "fail"})


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


def _loads_maybe(value: Any) -> Any:
    """Decode a field the provider sends as a JSON string (or, defensively, as JSON)."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value or {}


def _credits(data: Mapping[str, Any]) -> Decimal | None:
    for key in ("creditsConsumed", "consumeCredits"):
        if data.get(key) is not None:
            try:
                return Decimal(str(data[key]))
            except InvalidOperation:
                return None
    return None


def parse_task(data: Mapping[str, Any]) -> TaskRecord:
    """Read a recordInfo `data` object (or a callback's) defensively."""
    task_id = data.get("taskId") or data.get("task_id") or ""
    results = _loads_maybe(data.get("resultJson"))
    urls = results.get("resultUrls", []) if isinstance(results, dict) else []
    param = _loads_maybe(data.get("param"))
    complete = data.get("completeTime")
    return TaskRecord(
        task_id=str(task_id),
        state=str(data.get("state") or ""),
        result_urls=[str(url) for url in urls if isinstance(url, str)],
        fail_code=str(data.get("failCode") or ""),
        fail_message=str(data.get("failMsg") or ""),
        credits=_credits(data),
        callback_url=str(param.get("callBackUrl") or "") if isinstance(param, dict) else "",
        complete_time_ms=int(complete) if isinstance(complete, int | float) else None,
    )


def callback_task_id(body: Mapping[str, Any]) -> str:
    """Find the task id in a callback body, wherever the sender put it."""
    data = body.get("data") if isinstance(body.get("data"), Mapping) else {}
    return str(data.get("taskId") or data.get("task_id") or body.get("taskId") or "")


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
    return hmac.compare_digest(callback_signature(key, task_id, timestamp), signature)


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
        )
        self._upload = httpx.Client(
            base_url=upload_base, headers=headers, timeout=timeout, transport=transport
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
        task_id = data.get("taskId") if isinstance(data, Mapping) else None
        if not task_id:
            # Accepted, by the envelope: a task may exist that we cannot name.
            raise ProviderError(
                BAD_ENVELOPE, "createTask answered without a taskId", ambiguous=True
            )
        return str(task_id)

    def record_info(self, task_id: str) -> TaskRecord:
        data = self._call(self._api, "GET", "/api/v1/jobs/recordInfo", params={"taskId": task_id})
        if not isinstance(data, Mapping):
            raise ProviderError(BAD_ENVELOPE, "recordInfo answered without data")
        return parse_task(data)

    def credit_balance(self) -> Decimal:
        data = self._call(self._api, "GET", "/api/v1/chat/credit")
        try:
            return Decimal(str(data))
        except InvalidOperation as error:
            raise ProviderError(BAD_ENVELOPE, f"credit answered {data!r}") from error

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
        if not isinstance(data, Mapping) or not data.get("downloadUrl"):
            raise ProviderError(BAD_ENVELOPE, "upload answered without a downloadUrl")
        return UploadedFile(
            download_url=str(data["downloadUrl"]),
            file_path=str(data.get("filePath") or ""),
            size=int(data.get("fileSize") or len(content)),
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
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _unwrap(response: httpx.Response, *, creates: bool = False) -> Any:
    """Return the envelope's `data`, or raise what its `code` (or the HTTP status) means."""
    try:
        envelope = response.json()
    except ValueError:
        envelope = None
    if not isinstance(envelope, Mapping) or not isinstance(envelope.get("code"), int):
        code = response.status_code if response.status_code != 200 else BAD_ENVELOPE
        text = response.text[:200].strip() or response.reason_phrase
        raise ProviderError(
            code,
            f"no valid envelope: {text}",
            retry_after=_retry_after(response),
            # Not the provider's own answer (a proxy's 502, a garbled 200): a create may
            # have gone through. A 429 is a refusal, whoever sent it.
            ambiguous=creates and code != 429,
        )
    code = envelope["code"]
    if response.status_code != 200 and code == 200:
        code = response.status_code
    if code != 200:
        message = str(envelope.get("msg") or envelope.get("message") or "")
        raise ProviderError(code, message, retry_after=_retry_after(response))
    return envelope.get("data")


def client_from_settings() -> KieClient:
    """The client for the configured provider (the sandbox when no key is set)."""
    from django.conf import settings

    return KieClient(
        api_base=settings.KIE_API_BASE,
        upload_base=settings.KIE_UPLOAD_BASE,
        api_key=settings.KIE_API_KEY,
        model=settings.KIE_MODEL,
        connect_timeout=settings.KIE_CONNECT_TIMEOUT,
        read_timeout=settings.KIE_READ_TIMEOUT,
    )
