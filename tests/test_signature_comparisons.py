"""Signatures and secrets from strangers are compared as bytes: odd characters are refused."""

import ast
import time
from pathlib import Path

import pytest
from django.urls import reverse

import imagereview
from imagereview.models import CallbackReceipt, Generation, ImageRequest
from imagereview.providers.kie import verify_callback_signature

NON_ASCII = ["é", "ü" * 44, "签名", "\x80\xff", "\u2028"]
NAMES = ["accent", "long", "cjk", "high-bytes", "line-separator"]


@pytest.mark.parametrize("signature", NON_ASCII, ids=NAMES)
def test_verify_callback_signature_refuses_non_ascii_without_raising(signature):
    checked = {"key": "k", "task_id": "t1", "timestamp": "1000", "tolerance": 300, "now": 1000}
    assert verify_callback_signature(**checked, signature=signature) is False


@pytest.mark.parametrize("signature", NON_ASCII, ids=NAMES)
def test_non_ascii_callback_signature_is_refused_with_403(client, requester, settings, signature):
    settings.KIE_WEBHOOK_HMAC_KEY = "webhook-secret"
    image_request = ImageRequest.objects.create(requester=requester, prompt="p")
    generation = Generation.objects.create(
        request=image_request, state=Generation.State.SUBMITTED, provider_task_id="task_1"
    )
    client.raise_request_exception = False
    response = client.post(
        reverse("provider_callback", args=[generation.pk, generation.callback_token]),
        '{"code": 200, "data": {"taskId": "task_1"}}',
        content_type="application/json",
        # The test client sends headers as WSGI does: decoded from latin-1.
        headers={
            "X-Webhook-Timestamp": str(int(time.time())),
            "X-Webhook-Signature": signature.encode().decode("latin-1"),
        },
    )
    assert response.status_code == 403
    assert CallbackReceipt.objects.get().outcome == CallbackReceipt.Outcome.BAD_SIGNATURE


def _is_bytes(argument: ast.expr, assigned: dict[str, ast.expr]) -> bool:
    """Whether an argument is visibly bytes: a literal, an encode() or digest(), or a name
    assigned one of those in the same function."""
    if isinstance(argument, ast.Name) and argument.id in assigned:
        return _is_bytes(assigned.pop(argument.id), assigned)
    if isinstance(argument, ast.Constant):
        return isinstance(argument.value, bytes)
    if isinstance(argument, ast.Call):
        name = getattr(argument.func, "attr", getattr(argument.func, "id", ""))
        return name in ("encode", "digest", "bytes")
    return False


def _compare_digest_calls() -> list[tuple[str, bool]]:
    """Every compare_digest call in the app: where, and whether both arguments are bytes."""
    calls = []
    for path in Path(imagereview.__file__).parent.rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            assigned = {
                node.targets[0].id: node.value
                for node in ast.walk(function)
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            }
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") == "compare_digest"
                ):
                    on_bytes = all(_is_bytes(arg, dict(assigned)) for arg in node.args)
                    calls.append((f"{path.name}:{node.lineno}", on_bytes))
    return calls


def test_every_constant_time_comparison_in_the_code_is_on_bytes():
    """compare_digest raises TypeError on a str holding anything but ASCII: a 500 for a header."""
    calls = _compare_digest_calls()
    assert len(calls) >= 4, "the scan no longer finds the known comparisons"
    assert [where for where, on_bytes in calls if not on_bytes] == []
