"""The app's URLs plus a bare callback endpoint: the least a callback receiver can do (check
the HMAC headers, insert one receipt row), the floor the app's own endpoint is measured
against."""

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from imagereview.models import CallbackReceipt
from imagereview.providers.kie import callback_task_id, verify_callback_signature
from imagereview.urls import urlpatterns as app_urlpatterns

KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Webhook-Timestamp", "X-Webhook-Signature")


@csrf_exempt
@require_POST
def bare_callback(request: HttpRequest, generation_id: int, token: str) -> JsonResponse:
    payload = json.loads(request.body)
    task_id = callback_task_id(payload)
    authentic = verify_callback_signature(
        key=settings.KIE_WEBHOOK_HMAC_KEY,
        task_id=task_id,
        timestamp=request.headers.get("X-Webhook-Timestamp", ""),
        signature=request.headers.get("X-Webhook-Signature", ""),
        tolerance=settings.KIE_CALLBACK_TOLERANCE,
    )
    if not authentic:
        return JsonResponse({"code": 403, "msg": "bad signature"}, status=403)
    CallbackReceipt.objects.create(
        generation_id=generation_id,
        task_id=task_id,
        code=payload.get("code"),
        outcome=CallbackReceipt.Outcome.ACCEPTED,
        verified=True,
        headers={name: request.headers[name] for name in KEPT_HEADERS if name in request.headers},
        body=request.body.decode(),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    return JsonResponse({"code": 200, "msg": "success"})


urlpatterns = [
    path("bare-callbacks/<int:generation_id>/<str:token>/", bare_callback),
    *app_urlpatterns,
]
