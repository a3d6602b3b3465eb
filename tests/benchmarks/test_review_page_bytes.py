"""What the review page of four 4K variants costs the reviewer's browser and the web process:
today's page (every original, 15-25 MB each) against the page with previews, in one run.

The four outputs are photographs as the sandbox renders them ("photo" texture: 4K PNGs of
about 19 MB), stored by the real storing action, which makes their previews. Headless
Chromium loads the page in a fresh context each time; the web process is Django's live
server on loopback, which streams the files itself (as development does; production hands
them to nginx or the bucket).
"""

import re
import statistics
import time

import pytest
from django.urls import reverse

from imagereview import actions
from imagereview.models import Asset, Generation, ImageRequest
from tests.conftest import client_for, wait_for
from tests.e2e.conftest import browser, log_in  # noqa: F401 (browser is a fixture)

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]

VARIANTS = 4
BROWSER_ROUNDS = 3
CPU_ROUNDS = 3
SHOWN_GOAL_MS = 1000

# Until every image of the page is decoded and drawable: the moment, from navigation start.
ALL_SHOWN = """() => {
  const images = [...document.images];
  if (!images.length || !images.every((img) => img.complete && img.naturalWidth > 0)) return false;
  window.allShownAt ??= performance.now();
  return true;
}"""
TRANSFERRED = """() => {
  const page = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const images = resources.filter((entry) => entry.initiatorType === "img");
  return {
    page: page.encodedBodySize,
    images: images.reduce((sum, entry) => sum + entry.encodedBodySize, 0),
    imageCount: images.length,
    other: resources
      .filter((entry) => entry.initiatorType !== "img")
      .reduce((sum, entry) => sum + entry.encodedBodySize, 0),
    shownMs: window.allShownAt,
    pageMs: page.responseEnd,
    lastImageMs: Math.max(0, ...images.map((entry) => entry.responseEnd)),
  };
}"""


@pytest.fixture
def four_4k_photos(requester, kie, sandbox, settings) -> ImageRequest:
    settings.KIE_CALLBACKS = False
    sandbox.configure(texture="photo")
    image_request = actions.create_request(
        requester=requester,
        prompt="a harbour at dawn, fishing boats, wet cobblestones, 4K photograph",
        aspect_ratio="16:9",
        resolution="4K",
        output_format="png",
        variants=VARIANTS,
    )
    generations = list(image_request.generations.all())
    for generation in generations:
        actions.submit_generation(generation_id=generation.pk, client=kie)

    def all_succeeded() -> bool:
        for generation in generations:
            actions.refresh_generation(generation_id=generation.pk, client=kie)
        states = Generation.objects.filter(request=image_request).values_list("state", flat=True)
        return all(state != Generation.State.SUBMITTED for state in states)

    wait_for(all_succeeded, timeout=300, interval=0.2, message="four 4K renders")
    started = time.perf_counter()
    for generation in generations:
        actions.store_outputs(generation_id=generation.pk, client=kie)
    storing = time.perf_counter() - started
    image_request.refresh_from_db()
    assert image_request.status == ImageRequest.Status.IN_REVIEW
    print(
        f"\nstoring (download, verify, hash, thumbnail, preview): {storing / VARIANTS:.2f} s/output"
    )
    return image_request


def load_in_browser(browser, live_server, url: str) -> dict:  # noqa: F811
    """Open the review page in a fresh context (empty cache) and measure it."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    try:
        page = context.new_page()
        log_in(page, live_server.url, "rita", "rita-password")
        page.goto(live_server.url + url, wait_until="commit")
        page.wait_for_function(ALL_SHOWN, timeout=300_000)
        page.wait_for_load_state("load")
        return page.evaluate(TRANSFERRED)
    finally:
        context.close()


def cpu_per_page(client, url: str) -> float:
    """CPU seconds of this process to render the page and send every image it shows."""
    start = time.process_time()
    for _ in range(CPU_ROUNDS):
        body = client.get(url).content.decode()
        for source in re.findall(r'<img src="([^"]+)"', body):
            response = client.get(source)
            assert response.status_code == 200
            if response.streaming:
                for _chunk in response.streaming_content:
                    pass
    return (time.process_time() - start) / CPU_ROUNDS


def measure(browser, live_server, reviewer, url: str) -> dict:  # noqa: F811
    loads = [load_in_browser(browser, live_server, url) for _ in range(BROWSER_ROUNDS)]
    return {
        "bytes": loads[0]["page"] + loads[0]["images"],
        "other": loads[0]["other"],
        "images": loads[0]["imageCount"],
        "shown_ms": statistics.median(load["shownMs"] for load in loads),
        "shown_best_ms": min(load["shownMs"] for load in loads),
        "page_ms": statistics.median(load["pageMs"] for load in loads),
        "last_image_ms": statistics.median(load["lastImageMs"] for load in loads),
        "cpu_s": cpu_per_page(client_for(reviewer), url),
    }


def test_review_page_bytes_and_time_with_previews_against_originals(
    browser,  # noqa: F811
    live_server,
    four_4k_photos,
    reviewer,
    settings,
):
    url = reverse("review_detail", args=[four_4k_photos.pk])
    outputs = Asset.objects.filter(request=four_4k_photos, kind=Asset.Kind.OUTPUT)
    assert outputs.count() == VARIANTS
    assert all(output.preview and output.preview_width == 2048 for output in outputs)
    saved = list(outputs.values("pk", "preview", "preview_width", "preview_height"))
    original_bytes = sum(output.bytes for output in outputs)
    preview_bytes = sum(output.preview.size for output in outputs)

    with_previews = measure(browser, live_server, reviewer, url)
    # Today's page: the same request as it was stored before previews existed.
    outputs.update(preview="", preview_width=None, preview_height=None)
    today = measure(browser, live_server, reviewer, url)
    for row in saved:
        Asset.objects.filter(pk=row.pop("pk")).update(**row)
    # In production the web process only answers X-Accel-Redirect; nginx sends the bytes.
    settings.MEDIA_ACCEL_REDIRECT = "/protected-media/"
    accel_cpu = cpu_per_page(client_for(reviewer), url)

    ratio = today["bytes"] / with_previews["bytes"]
    width, height = outputs[0].width, outputs[0].height
    print(f"\nreview page of {VARIANTS} 4K photographic variants ({width}x{height} PNG)")
    print(f"  originals {original_bytes / 1e6:.1f} MB, previews {preview_bytes / 1e6:.2f} MB")
    print(f"  {'':30} {'today (originals)':>18} {'with previews':>15}")
    rows = [
        ("page + images transferred", "bytes", 1e-6, "MB"),
        ("page HTML received (median)", "page_ms", 1, "ms"),
        ("last image received (median)", "last_image_ms", 1, "ms"),
        ("all images shown (median)", "shown_ms", 1, "ms"),
        ("all images shown (best)", "shown_best_ms", 1, "ms"),
        ("web CPU per page, streamed", "cpu_s", 1000, "ms"),
    ]
    for label, key, factor, unit in rows:
        before, after = today[key] * factor, with_previews[key] * factor
        print(f"  {label:30} {before:>15.2f} {unit} {after:>12.2f} {unit}")
    print(f"  web CPU per page behind nginx (X-Accel-Redirect): {accel_cpu * 1000:.0f} ms")
    shown = "yes" if with_previews["shown_ms"] <= SHOWN_GOAL_MS else "no"
    print(f"  {ratio:.1f}x fewer bytes (goal >= 10x); shown within {SHOWN_GOAL_MS} ms: {shown}")

    assert today["images"] == with_previews["images"] == VARIANTS
    assert preview_bytes < original_bytes
    assert today["bytes"] > original_bytes  # today's page did fetch every original
    assert with_previews["bytes"] < preview_bytes + 1_000_000  # and no original with previews
    assert ratio >= 10
    assert settings.MEDIA_ACCEL_REDIRECT
