"""The dispatcher: run the reconciler every second until stopped."""

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from imagereview import actions
from imagereview.providers.kie import shared_client

log = logging.getLogger("imagereview.dispatch")


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


class Command(BaseCommand):
    help = "Send due work to the cluster (submissions within the rate limit, polls, stores)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.DISPATCH_INTERVAL,
            help="seconds between passes",
        )

    def handle(self, *args: object, interval: float, **options: object) -> None:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Dispatcher running every {interval:g} s")
        while not stopping:
            started = time.monotonic()
            close_old_connections()
            try:
                actions.reconcile(client=shared_client(), pace=_sleep_until)
            except Exception:
                # One bad pass must not stop the dispatcher; the next one tries again.
                log.exception("reconcile pass failed")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        self.stdout.write("Dispatcher stopped")
