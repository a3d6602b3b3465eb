"""Check every stored file against the sha256 and size recorded for it."""

from collections.abc import Iterable

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from imagereview.actions import alerts, integrity
from imagereview.models import Asset


class Command(BaseCommand):
    help = (
        "Check that every stored asset's file is present, with the sha256 and size recorded; "
        "report missing and altered files, raise or resolve the storage alert, and exit 1 "
        "when any is found."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--sample",
            type=int,
            default=0,
            metavar="N",
            help="check N assets picked at random (and those an open alert names) instead of all",
        )

    def handle(self, *args: object, sample: int, **options: object) -> None:
        if sample < 0:
            raise CommandError("--sample takes a positive number")
        everything = Asset.objects.order_by("pk")
        if sample:
            picked = integrity.random_sample(everything, sample)
            seen = {asset.pk for asset in picked}
            picked += Asset.objects.filter(pk__in=set(integrity.flagged_assets()) - seen)
            assets: Iterable[Asset] = picked
            total = len(picked)
        else:
            assets, total = everything.iterator(chunk_size=500), everything.count()
        # Only a terminal gets the counter: a log file would fill with carriage returns.
        progress = self.stdout.isatty()
        problems: dict[int, str] = {}
        for done, asset in enumerate(assets, start=1):
            if problem := integrity.verify_asset(asset):
                problems[asset.pk] = problem
                if progress:
                    self.stdout.write("")
                self.stdout.write(f"{problem}: asset {asset.pk} ({asset.kind}) {asset.file.name}")
            if progress:
                self.stdout.write(f"\rChecked {done}/{total}", ending="")
                self.stdout.flush()
        if progress:
            self.stdout.write("")
        finding = integrity.storage_finding(
            problems, checked=total, complete=not sample, since=timezone.now()
        )
        outcome = alerts.apply_finding(finding)
        if problems:
            missing = sum(1 for problem in problems.values() if problem == "missing")
            raise CommandError(
                f"{missing} missing and {len(problems) - missing} altered of {total} files "
                f"checked (storage alert {outcome}).",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS(f"All {total} files checked are as recorded."))
