"""The whole flow with a real django-q2 cluster process, the sandbox over HTTP and callbacks
into a live web server."""

import pytest

from imagereview import actions
from imagereview.models import Asset, CallbackReceipt, Generation, ImageRequest
from tests.conftest import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

R = ImageRequest.Status


def new_request(requester, variants: int = 2) -> ImageRequest:
    return actions.create_request(
        requester=requester,
        prompt="a paper boat on a rain puddle",
        aspect_ratio="4:3",
        resolution="1K",
        output_format="jpg",
        variants=variants,
    )


def status_of(image_request: ImageRequest) -> str:
    return ImageRequest.objects.get(pk=image_request.pk).status


def test_request_reaches_review_through_callbacks(start_cluster, requester, sandbox):
    cluster = start_cluster()
    image_request = new_request(requester)

    wait_for(
        lambda: status_of(image_request) == R.IN_REVIEW,
        timeout=60,
        message=f"the request to reach review; cluster log:\n{cluster.log()}",
    )

    generations = list(image_request.generations.all())
    assert {g.state for g in generations} == {Generation.State.STORED}
    task_ids = {task["taskId"] for task in sandbox.tasks}
    assert {g.provider_task_id for g in generations} == task_ids
    receipts = CallbackReceipt.objects.filter(generation__request=image_request)
    assert {r.task_id for r in receipts if r.verified} == task_ids
    outputs = Asset.objects.filter(request=image_request, kind=Asset.Kind.OUTPUT)
    assert (
        sorted((o.width, o.height, o.content_type) for o in outputs)
        == [(1200, 896, "image/jpeg")] * 2
    )


def test_request_completes_by_polling_when_no_callback_comes(
    start_cluster, start_process, requester, sandbox
):
    polling = {"KIE_CALLBACKS": "false"}
    cluster = start_cluster(**polling)
    dispatcher = start_process("dispatch", **polling)
    image_request = new_request(requester, variants=1)

    wait_for(
        lambda: status_of(image_request) == R.IN_REVIEW,
        timeout=60,
        interval=0.5,
        message=f"the dispatcher to finish the request; logs:\n{cluster.log()}{dispatcher.log()}",
    )
    assert not CallbackReceipt.objects.exists()
    generation = image_request.generations.get()
    assert generation.outputs.count() == 1
    assert generation.queries >= 1


@pytest.mark.parametrize(("app_key", "accepted"), [("shared-key", True), ("other-key", False)])
def test_signed_callbacks_are_verified_with_the_shared_hmac_key(
    start_cluster, requester, sandbox, settings, app_key, accepted
):
    sandbox.configure(webhook_hmac_key="shared-key")
    settings.KIE_WEBHOOK_HMAC_KEY = app_key
    start_cluster(RECONCILE_FIRST_POLL="600")
    image_request = new_request(requester, variants=1)

    wait_for(lambda: CallbackReceipt.objects.exists(), timeout=60, message="the callback")
    receipt = CallbackReceipt.objects.get()
    assert receipt.headers["X-Webhook-Signature"]
    assert receipt.verified is accepted
    if accepted:
        wait_for(lambda: status_of(image_request) == R.IN_REVIEW, timeout=60)
    else:
        assert receipt.outcome == CallbackReceipt.Outcome.BAD_SIGNATURE
        assert image_request.generations.get().state == Generation.State.SUBMITTED
