"""The fault knobs and their dice: which calls fail and which tasks misbehave.

One seeded random generator draws every fault in a fixed order, so a fresh server with the
same seed and the same calls replays the same faults.
"""

import random
import threading

from .config import SandboxConfig
from .wire import Rejection, rate_limited

# Faults of a single call, drawn before the call does anything.
REQUEST_FAULTS = ("rate_429", "rate_5xx", "rate_455")
# Faults of a task, drawn once when it is created.
TASK_FAULTS = (
    "rate_timeout",
    "rate_fail_501",
    "rate_drop_callback",
    "rate_duplicate_callback",
    "rate_delay_callback",
    "rate_early_callback",
    "rate_result_404_once",
    "rate_result_expired",
)


class Dice:
    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    def chance(self, rate: float) -> bool:
        """Roll for an event of probability `rate`; a rate of 0 rolls nothing."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def fail_request(self, config: SandboxConfig) -> None:
        """Raise the Rejection of a call that the dice make fail (429, 5xx or 455)."""
        if self.chance(config.rate_429):
            raise rate_limited(1)
        if self.chance(config.rate_5xx):
            status = 500 if self.chance(0.5) else 200
            raise Rejection(500, "Internal server error", status=status)
        if self.chance(config.rate_455):
            raise Rejection(455, "maintenance: the service is temporarily unavailable")

    def task_faults(self, config: SandboxConfig) -> frozenset[str]:
        """Draw the faults of a new task, named without their `rate_` prefix."""
        return frozenset(
            name.removeprefix("rate_") for name in TASK_FAULTS if self.chance(getattr(config, name))
        )
