"""Storage integrity: stored files checked against the sha256 and size recorded for them."""

import random
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db.models import Max, Min, QuerySet

from imagereview import media
from imagereview.actions.drift import Finding, admin_list
from imagereview.models import Alert, Asset


def verify_asset(asset: Asset) -> str:
    """What is wrong with the stored file: "missing", "altered" (sha256 or size), or ""."""
    storage, name = asset.file.storage, asset.file.name
    if not name or not storage.exists(name):
        return "missing"
    with storage.open(name, "rb") as stored:
        sha256, size = media.digest(stored)
    return "" if (sha256, size) == (asset.sha256, asset.bytes) else "altered"


def storage_finding(
    problems: dict[int, str], *, checked: int, complete: bool, since: datetime
) -> Finding:
    """The storage alert from a verification of `checked` assets (all of them if `complete`)."""
    if not problems:
        return Finding("storage_mismatch", breached=False)
    missing = sorted(pk for pk, problem in problems.items() if problem == "missing")
    altered = sorted(pk for pk, problem in problems.items() if problem == "altered")
    ids = ",".join(str(pk) for pk in sorted(problems))
    scope = "all stored files" if complete else f"a sample of {checked} stored files"
    return Finding(
        "storage_mismatch",
        breached=True,
        title=f"Storage mismatch: {len(missing)} missing, {len(altered)} altered",
        detail=(
            f"Checked {scope} at {since:%Y-%m-%d %H:%M} UTC. Missing: "
            f"{', '.join(map(str, missing)) or 'none'}. Altered (sha256 or size differ): "
            f"{', '.join(map(str, altered)) or 'none'}. Run `manage.py verify_storage`."
        ),
        value=len(problems),
        threshold=0,
        severity=Alert.Severity.CRITICAL,
        link=admin_list("asset", id__in=ids),
    )


def flagged_assets() -> list[int]:
    """The assets the unresolved storage alert names, to be checked again until they pass."""
    alert = Alert.objects.filter(kind="storage_mismatch").exclude(state=Alert.State.RESOLVED)
    link = alert.values_list("link", flat=True).first() or ""
    ids = parse_qs(urlsplit(link).query).get("id__in", [""])[0]
    return [int(pk) for pk in ids.split(",") if pk.isdigit()]


def storage_mismatch(now: datetime) -> list[Finding]:
    """Re-hash a random sample of stored outputs, and those an open alert already names."""
    outputs = Asset.objects.filter(kind=Asset.Kind.OUTPUT)
    sample = random_sample(outputs, settings.DRIFT_STORAGE_SAMPLE)
    known = {asset.pk for asset in sample}
    sample += list(Asset.objects.filter(pk__in=set(flagged_assets()) - known))
    problems = {asset.pk: problem for asset in sample if (problem := verify_asset(asset))}
    if not sample:
        return [Finding("storage_mismatch", breached=None)]
    return [storage_finding(problems, checked=len(sample), complete=False, since=now)]


def random_sample(assets: QuerySet[Asset], size: int) -> list[Asset]:
    """`size` assets (or all, if fewer) picked at random, each by an index lookup.

    ORDER BY RANDOM() would sort the whole table on every check; a random id, then the first
    asset at or after it, is a little biased by gaps in the ids but costs one lookup. Picks
    that land on an asset already taken are made up by the assets after a random point.
    """
    bounds = assets.aggregate(low=Min("pk"), high=Max("pk"))
    if bounds["low"] is None or size <= 0:
        return []
    picked: dict[int, Asset] = {}
    for _ in range(size):
        at = random.randint(bounds["low"], bounds["high"])
        asset = assets.filter(pk__gte=at).order_by("pk").first()
        if asset is not None:
            picked.setdefault(asset.pk, asset)
    start = random.randint(bounds["low"], bounds["high"])
    rest = assets.exclude(pk__in=list(picked)).order_by("pk")
    for part in (rest.filter(pk__gte=start), rest.filter(pk__lt=start)):
        missing = size - len(picked)
        if missing > 0:
            picked.update((asset.pk, asset) for asset in part[:missing])
    return list(picked.values())
