"""The whole flow with a real django-q2 cluster process, the sandbox over HTTP and callbacks
into a live web server."""

import pytest

from imagereview import actions
from imagereview.models import Asset, CallbackReceipt, Generation, ImageRequest
from imagereview.providers.kie import client_from_settings
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


def test_request_completes_by_polling_when_no_callback_comes(start_cluster, requester, sandbox):
    cluster = start_cluster(KIE_CALLBACKS="false", RECONCILE_FIRST_POLL="0")
    image_request = new_request(requester, variants=1)

    def reconciled() -> bool:
        with client_from_settings() as client:
            actions.reconcile(client=client)
        return status_of(image_request) == R.IN_REVIEW

    wait_for(
        reconciled,
        timeout=60,
        interval=0.5,
        message=f"the reconciler to finish the request; cluster log:\n{cluster.log()}",
    )
    assert not CallbackReceipt.objects.exists()
    assert image_request.generations.get().outputs.count() == 1
