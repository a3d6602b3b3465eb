"""A worker's peak memory while it stores one output: a photographic 4K PNG (15-25 MB, as
the real provider's weigh), a photographic 4K JPEG, a flat 4K PNG, a 4K PNG edit of that
photographic 4K PNG (whose checks compare the two), and a photographic 1K PNG as the baseline
of the same run.

Each output is stored by the cluster's own task function in a fresh process on the test
database, so the peak (VmHWM) is that one store's and nothing else's.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from imagereview.models import Asset, Generation, ImageRequest
from imagereview.providers.sandbox import SandboxServer
from tests.benchmarks.support import print_table
from tests.factories import stored_asset

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
GOAL_MB = 250
# (resolution, format, texture, edit: whether the previous case's output is its reference)
CASES = (
    ("1K", "png", "photo", False),
    ("4K", "jpg", "photo", False),
    ("4K", "png", "flat", False),
    ("4K", "png", "photo", False),
    ("4K", "png", "photo", True),
)
# Stand in for a cluster worker: everything imported that a worker imports, then one store.
WORKER = """
import sys
import django
django.setup()
from imagereview import tasks

def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

idle = status("VmRSS")
tasks.store_outputs(int(sys.argv[1]))
print(idle, status("VmHWM"))
"""


def _result_url(
    sandbox: SandboxServer, resolution: str, output_format: str, references: list[str]
) -> str:
    body = {
        "model": "nano-banana-pro",
        "input": {
            "prompt": f"a harbour at noon, {resolution} {output_format} {sandbox.config.texture}",
            "resolution": resolution,
            "output_format": output_format,
            "image_input": references,
        },
    }
    headers = {"Authorization": f"Bearer {sandbox.config.api_key}"}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=60) as client:
        task_id = client.post("/api/v1/jobs/createTask", json=body).json()["data"]["taskId"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})
            data = record.json()["data"]
            if data["state"] == "success":
                return json.loads(data["resultJson"])["resultUrls"][0]
            assert data["state"] != "fail", data
            time.sleep(0.1)
    raise AssertionError(f"{task_id} did not finish")


def _succeeded_generation(
    requester, resolution: str, output_format: str, url: str, reference: bytes | None
) -> int:
    image_request = ImageRequest.objects.create(
        requester=requester,
        prompt=f"a harbour at noon, {resolution} {output_format}",
        mode=ImageRequest.Mode.EDIT if reference else ImageRequest.Mode.GENERATE,
        resolution=resolution,
        output_format=output_format,
        status=ImageRequest.Status.GENERATING,
    )
    if reference:
        stored_asset(image_request, reference, kind=Asset.Kind.REFERENCE, index=0)
    generation = Generation.objects.create(
        request=image_request,
        state=Generation.State.SUCCEEDED,
        provider_task_id=url.rsplit("/", 2)[-2],
        result_urls=[url],
        completed_at=timezone.now(),
    )
    return generation.pk


def _store_in_fresh_worker(cluster_env: dict[str, str], generation_id: int) -> tuple[int, int]:
    env = {**cluster_env, "DJANGO_SETTINGS_MODULE": "imagereview.settings", "LOG_LEVEL": "WARNING"}
    finished = subprocess.run(
        [sys.executable, "-c", WORKER, str(generation_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    idle, peak = finished.stdout.split()[-2:]
    return int(idle), int(peak)


def test_a_worker_stores_a_photographic_4k_png_within_the_memory_goal(
    sandbox: SandboxServer, cluster_env: dict[str, str], requester
):
    sandbox.configure(mode="unthrottled")
    rows = []
    peaks = {}
    url = ""
    for resolution, output_format, texture, edit in CASES:
        sandbox.configure(texture=texture)
        reference = httpx.get(url, timeout=60).content if edit else None
        url = _result_url(sandbox, resolution, output_format, [url] if edit else [])
        generation_id = _succeeded_generation(requester, resolution, output_format, url, reference)
        idle, peak = _store_in_fresh_worker(cluster_env, generation_id)
        output = Asset.objects.get(generation_id=generation_id, kind=Asset.Kind.OUTPUT)
        assert Generation.objects.get(pk=generation_id).state == Generation.State.STORED
        label = f"{resolution} {output_format.upper()} {'edit' if edit else texture}"
        peaks[label] = peak
        rows.append((label, output.bytes, idle, peak))

    baseline = peaks["1K PNG photo"]
    mb = 1024 * 1024
    print_table(
        f"Worker peak memory storing one output (fresh process each; goal <= {GOAL_MB} MB)",
        [
            (
                label,
                f"{size / mb:.1f}",
                f"{peak / mb:.0f}",
                f"{(peak - idle) / mb:.0f}",
                f"{(peak - baseline) / mb:+.0f}",
                "met" if peak <= GOAL_MB * mb else "NOT met",
            )
            for label, size, idle, peak in rows
        ],
        headers=("file MB", "peak RSS MB", "over idle MB", "vs 1K PNG MB", "goal"),
    )
    sizes = {label: size for label, size, *_ in rows}
    assert 15 * mb <= sizes["4K PNG photo"] <= 25 * mb, "4K PNGs weigh 15-25 MB"
    assert all(peak <= GOAL_MB * mb for peak in peaks.values())
