"""The provider's completion callbacks: record, answer at once, let the cluster refresh."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from imagereview import actions
from imagereview.models import CallbackReceipt

KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Webhook-Timestamp", "X-Webhook-Signature")


def _unknown() -> JsonResponse:
    return JsonResponse({"code": 404, "msg": "unknown callback"}, status=404)


@csrf_exempt
@require_POST
def provider_callback(request: HttpRequest, generation_id: int, token: str) -> JsonResponse:
    receipt = actions.record_callback(
        generation_id=generation_id,
        token=token,
        headers={name: request.headers[name] for name in KEPT_HEADERS if name in request.headers},
        body=request.body,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )
    # A wrong token answers as an unknown generation does: ids are not to be probed.
    if receipt is None or receipt.outcome == CallbackReceipt.Outcome.BAD_TOKEN:
        return _unknown()
    if not receipt.verified:
        # A body we could not read is the sender's mistake; anything else is unauthenticated.
        status = 400 if receipt.outcome == CallbackReceipt.Outcome.MALFORMED else 403
        return JsonResponse({"code": status, "msg": receipt.get_outcome_display()}, status=status)
    return JsonResponse({"code": 200, "msg": "success"})
