import contextlib
import logging
import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from imagereview.providers.sandbox import SandboxConfig, SandboxServer
from imagereview.providers.sandbox.config import MODES, TEXTURES


class Command(BaseCommand):
    help = "Run the built-in sandbox provider, a local stand-in for the Kie.ai Jobs API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", help="address to bind (default: settings.SANDBOX_HOST)")
        parser.add_argument("--port", type=int, help="port (default: settings.SANDBOX_PORT)")
        parser.add_argument(
            "--mode",
            choices=sorted(MODES),
            help="a preset of knobs; unthrottled: no latency, limits or faults (benchmarks)",
        )
        parser.add_argument(
            "--texture",
            choices=TEXTURES,
            help="photo: pictures that weigh what real ones do (a 4K PNG about 20 MB)",
        )

    def handle(
        self,
        *args: Any,
        host: str | None,
        port: int | None,
        mode: str | None = None,
        texture: str | None = None,
        **options: Any,
    ) -> None:
        host = host or getattr(settings, "SANDBOX_HOST", "127.0.0.1")
        port = port if port is not None else getattr(settings, "SANDBOX_PORT", 8765)
        config = SandboxConfig(
            api_key=getattr(settings, "KIE_API_KEY", "") or SandboxConfig.api_key,
            webhook_hmac_key=getattr(settings, "KIE_WEBHOOK_HMAC_KEY", "") or "",
        )
        try:
            server = SandboxServer(config, host=host, port=port)
            server.configure(**(getattr(settings, "SANDBOX", None) or {}))
            # After the settings, so that a preset asked for on the command line wins.
            flags = {"mode": mode, "texture": texture}
            server.configure(**{name: value for name, value in flags.items() if value})
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        except ValueError as exc:
            raise CommandError(f"settings.SANDBOX: {exc}") from exc

        self._log_to_stdout()
        signal.signal(signal.SIGTERM, _interrupt)
        shown = f" ({mode})" if mode else ""
        self.stdout.write(f"Sandbox provider listening on {server.url}{shown} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        self.stdout.write("Sandbox provider stopped")

    def _log_to_stdout(self) -> None:
        handler = logging.StreamHandler(self.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger = logging.getLogger("imagereview.sandbox")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # The project's logging config may also print this logger; one line per event is enough.
        logger.propagate = False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
