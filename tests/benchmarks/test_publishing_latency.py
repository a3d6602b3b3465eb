"""Approval to published file, manifest and first webhook delivered, over 200 approvals on
the embedded defaults (or whatever DATABASE_URL and REDIS_URL say), next to the same work
done inline by one process: the copy, the manifest and one POST to the same receiver."""

import json
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from imagereview import actions
from imagereview.models import (
    Asset,
    Publication,
    WebhookAttempt,
    WebhookEndpoint,
)
from imagereview.providers.webhooks import post_webhook
from imagereview.publishing import manifest
from tests.benchmarks.support import percentile, print_table, quiet_logs
from tests.conftest import wait_for
from tests.factories import request_in_review

pytestmark = [pytest.mark.benchmark, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

APPROVALS = int(os.environ.get("BENCH_APPROVALS", "200"))
# A busy review team: one approval every quarter second, all day.
PACE = float(os.environ.get("BENCH_APPROVALS_PER_SECOND", "4"))


def inline_baseline(outputs: list[Asset], receiver_url: str) -> list[float]:
    """Seconds per output for the bare work: copy the file, write its manifest, POST once."""
    storage = storages["publish-local"]
    samples = []
    for output in outputs:
        started = time.perf_counter()
        with output.file.open("rb") as stored:
            body = stored.read()
        storage.save(f"baseline/{output.pk}.png", ContentFile(body))
        document = manifest.manifest_for(output)
        storage.save(f"baseline/{output.pk}.json", ContentFile(json.dumps(document).encode()))
        post_webhook(receiver_url, json.dumps({"type": "baseline"}).encode(), {})
        samples.append(time.perf_counter() - started)
    return samples


def test_approval_to_published_and_announced(
    start_cluster, start_process, requester, reviewer, webhook_receiver, settings, cluster_env
):
    settings.PUBLISH_ON_APPROVAL = True
    env = {"PUBLISH_ON_APPROVAL": "true", "LOG_LEVEL": "WARNING"}
    WebhookEndpoint.objects.create(
        url=webhook_receiver.url, secret=webhook_receiver.secret, event_types=["output.published"]
    )
    outputs = [
        request_in_review(requester, variants=1, prompt=f"a harbour at dawn, take {n}")
        .assets.filter(kind=Asset.Kind.OUTPUT)
        .get()
        for n in range(APPROVALS)
    ]
    baseline = inline_baseline(outputs[:50], webhook_receiver.url)
    webhook_receiver.received.clear()

    start_cluster(**env)
    start_process("dispatch", **env)
    time.sleep(3)  # let the cluster start before the clock runs
    approved_at = {}
    started = time.monotonic()
    with quiet_logs():
        for number, output in enumerate(outputs):
            time.sleep(max(0.0, started + number / PACE - time.monotonic()))
            decision = actions.decide(output=output, reviewer=reviewer, verdict="approve")
            approved_at[output.pk] = decision.created_at
        wait_for(
            lambda: WebhookAttempt.objects.filter(status_code=200).count() >= APPROVALS,
            timeout=APPROVALS / PACE + 120,
            message="every publication announced",
        )

    published, announced, waited = [], [], []
    attempts = {
        attempt.delivery.event.payload["data"]["output_id"]: attempt
        for attempt in WebhookAttempt.objects.filter(status_code=200).select_related(
            "delivery__event"
        )
    }
    for publication in Publication.objects.all():
        approval = approved_at[publication.output_id]
        attempt = attempts[publication.output_id]
        published.append((publication.published_at - approval).total_seconds())
        # The attempt is logged as it starts and updated once the receiver answered.
        announced.append(
            (attempt.created_at - approval).total_seconds() + attempt.duration_ms / 1000
        )
        waited.append((attempt.created_at - publication.published_at).total_seconds())
    assert Publication.objects.filter(state=Publication.State.PUBLISHED).count() == APPROVALS
    credentials = set(Publication.objects.values_list("credentials", flat=True))

    ms = 1000
    print_table(
        f"Approval → published → announced, {APPROVALS} approvals at {PACE:g}/s, "
        f"{_stack()}, Content Credentials {', '.join(sorted(credentials))}",
        [
            ("approval → file + manifest published", *_spread(published, ms)),
            ("approval → first webhook delivered", *_spread(announced, ms)),
            ("  of which published → POST starts", *_spread(waited, ms)),
            ("baseline: copy + manifest + POST inline", *_spread(baseline, ms)),
            ("p95 goal (approval → announced)", "≤ 5000 ms", ""),
        ],
        headers=("p50", "p95", "max"),
    )


def _stack() -> str:
    database = (
        "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    )
    broker = "Redis broker" if os.environ.get("REDIS_URL") else "ORM broker"
    return f"{database}, {broker}"


def _spread(samples: list[float], scale: float) -> tuple[str, str, str]:
    return tuple(
        f"{value * scale:.0f} ms"
        for value in (percentile(samples, 0.5), percentile(samples, 0.95), max(samples))
    )
