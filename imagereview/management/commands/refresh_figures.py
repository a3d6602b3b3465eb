"""Count the dashboard's daily figures again: the days touched since the last run, or all."""

import time

from django.core.management.base import BaseCommand

from imagereview.actions import figures


class Command(BaseCommand):
    help = "Bring the daily cost and review figures up to date (--full recounts every day)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--full",
            action="store_true",
            help="Recount every day, e.g. after loading rows with their own timestamps.",
        )

    def handle(self, *args, full: bool = False, **options):
        started = time.perf_counter()
        days = figures.refresh(full=full)
        seconds = time.perf_counter() - started
        self.stdout.write(f"{days} days counted in {seconds:.1f} s.")
