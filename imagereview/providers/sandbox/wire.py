"""What travels over HTTP: the parsed request, the reply, and the contract's JSON envelope."""

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any


class Rejection(Exception):
    """Answer the current request with this envelope instead."""

    def __init__(
        self, code: int, msg: str, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Rejection(422, f"body is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise Rejection(422, "body must be a JSON object")
        return payload


@dataclass
class Reply:
    status: int = 200
    payload: Any = None
    content: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        if self.payload is None:
            return self.content
        return json.dumps(self.payload).encode()

    @property
    def code(self) -> Any:
        return self.payload.get("code") if isinstance(self.payload, dict) else None


def envelope(code: int, msg: str, data: Any = None, *, status: int = 200) -> Reply:
    return Reply(status=status, payload={"code": code, "msg": msg, "data": data})


def file_reply(status: int, msg: str) -> Reply:
    return Reply(status=status, content=msg.encode(), content_type="text/plain; charset=utf-8")


def rate_limited(retry_after: int) -> Rejection:
    return Rejection(429, "rate limited", status=429, headers={"Retry-After": str(retry_after)})
