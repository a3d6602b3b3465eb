"""Publishing on a real cluster, SIGKILLed mid-run: every publication ends in one file with
the sha256 it records, and its manifest beside it."""

import hashlib
import json

import pytest

from imagereview import actions
from imagereview.actions import publishing
from imagereview.models import Asset, Publication
from tests.conftest import wait_for
from tests.factories import request_in_review

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

P = Publication.State
PUBLICATIONS = 16


def published_count() -> int:
    return Publication.objects.filter(state=P.PUBLISHED).count()


def test_publications_survive_a_killed_worker(
    start_cluster, start_process, requester, reviewer, settings, publish_root
):
    # Lost jobs (the Redis broker forgets a killed worker's task) come back after the lease.
    lease = {"DISPATCH_LEASE": "3"}
    settings.DISPATCH_LEASE = 3
    outputs = []
    for number in range(PUBLICATIONS):
        image_request = request_in_review(requester, variants=1, prompt=f"a lantern, take {number}")
        output = image_request.assets.get(kind=Asset.Kind.OUTPUT)
        actions.decide(output=output, reviewer=reviewer, verdict="approve")
        outputs.append(output)
    cluster = start_cluster(**lease)
    dispatcher = start_process("dispatch", **lease)
    for output in outputs:
        publishing.publish(output=output, actor=reviewer)

    wait_for(lambda: published_count() >= 1, timeout=60, message="a first publication")
    cluster.kill()
    cluster.restart()
    wait_for(
        lambda: published_count() == PUBLICATIONS,
        timeout=90,
        message=f"every publication; cluster log:\n{cluster.log()}\n{dispatcher.log()}",
    )

    files = sorted(path for path in publish_root.rglob("*") if path.is_file())
    expected = []
    for publication in Publication.objects.all():
        image = publish_root / publication.key
        assert hashlib.sha256(image.read_bytes()).hexdigest() == publication.sha256
        document = json.loads((publish_root / publication.manifest_key).read_text())
        assert document["output"]["sha256"] == publication.output.sha256
        assert document["publication"]["key"] == publication.key
        expected += [image, publish_root / publication.manifest_key]
    assert files == sorted(expected)
