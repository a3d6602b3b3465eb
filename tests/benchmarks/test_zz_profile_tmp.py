import os, time, pytest
from tests.benchmarks.test_library_export import seed_approved_outputs, zip_export, plain_copy
from imagereview.queries.library import export_outputs
from imagereview.publishing import export, manifest
pytestmark = [pytest.mark.benchmark, pytest.mark.django_db(transaction=True)]
def t(f, n=3):
    best = 9e9
    for _ in range(n):
        s = time.perf_counter(); f(); best = min(best, time.perf_counter() - s)
    return best
def test_profile(requester, reviewer, monkeypatch):
    seed_approved_outputs(requester, reviewer, 1000)
    ids = list(export_outputs(viewer=reviewer).values_list("pk", flat=True))
    plain_copy(ids, os.devnull)
    print("\nfull export", t(lambda: zip_export(reviewer, os.devnull)))
    outs = list(export_outputs(viewer=reviewer).order_by("pk"))
    print("manifests_for x5 batches", t(lambda: [manifest.manifests_for(outs[i:i+200]) for i in range(0, 1000, 200)]))
    print("batches", t(lambda: [b for b in export._batches(export_outputs(viewer=reviewer))]))
    cache = {}
    for i in range(0, 1000, 200): cache.update(manifest.manifests_for(outs[i:i+200]))
    monkeypatch.setattr(export, "manifests_for", lambda batch: {o.pk: cache[o.pk] for o in batch})
    print("export without manifests_for", t(lambda: zip_export(reviewer, os.devnull)))
    import zlib
    data = [open(os.path.join(__import__('django.conf').conf.settings.MEDIA_ROOT, a.file.name),'rb').read() for a in outs[:300]]
    s=time.perf_counter(); [zlib.crc32(d) for d in data]; print("crc per 300", time.perf_counter()-s)
