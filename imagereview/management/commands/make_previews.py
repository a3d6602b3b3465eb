"""Store the preview of every large asset stored before previews existed."""

from django.core.management.base import BaseCommand, CommandError

from imagereview.actions.previews import lacking_preview, make_previews


class Command(BaseCommand):
    help = (
        "Store a preview (WebP, 2048 px on the long side) for every output and reference "
        "larger than that which has none. Safe to run again: assets with a preview are skipped."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=100, help="rows read per query (default 100)"
        )

    def handle(self, *args: object, batch_size: int, **options: object) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size takes a positive number")
        self.stdout.write(f"{lacking_preview().count()} assets lack a preview.")
        made, failures = make_previews(batch_size=batch_size)
        for asset_id, reason in failures.items():
            self.stderr.write(f"asset {asset_id}: {reason}")
        self.stdout.write(f"Stored {made} previews; {len(failures)} failed.")
        if failures:
            raise CommandError(f"{len(failures)} assets could not be read")
