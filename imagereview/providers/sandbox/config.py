"""The sandbox's knobs and limits, and the presets that set many knobs at once."""

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL = "nano-banana-pro"
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "auto")
RESOLUTIONS = ("1K", "2K", "4K")
OUTPUT_FORMATS = ("png", "jpg")
MAX_PROMPT_CHARS = 10_000
MAX_REFERENCES = 8
MAX_FILE_BYTES = 30 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
# Base64 inflates by 4/3; leave room for the JSON around it.
MAX_UPLOAD_BODY_BYTES = MAX_FILE_BYTES * 4 // 3 + 64 * 1024
STATES = ("waiting", "queuing", "generating")
DOWNLOAD_URL_TTL = 20 * 60
CALLBACK_TIMEOUT = 15.0
FETCH_TIMEOUT = 30.0
# "flat": quick drawings that compress well; "photo": grain and detail that weigh what the
# real provider's files weigh (a 4K PNG about 20 MB).
TEXTURES = ("flat", "photo")


def _default_latency() -> dict[str, float]:
    return {"waiting": 0.3, "queuing": 0.3, "generating": 1.0}


@dataclass(frozen=True)
class SandboxConfig:
    api_key: str = "sandbox-key"
    webhook_hmac_key: str = ""
    latency: dict[str, float] = field(default_factory=_default_latency)
    seed: int = 0
    credits: float = 100_000.0
    submit_limit: int = 20
    submit_window: float = 10.0
    query_limit: int = 10
    query_window: float = 1.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_455: float = 0.0
    rate_timeout: float = 0.0
    rate_fail_501: float = 0.0
    rate_drop_callback: float = 0.0
    rate_duplicate_callback: float = 0.0
    rate_delay_callback: float = 0.0
    rate_early_callback: float = 0.0
    rate_result_404_once: float = 0.0
    rate_result_expired: float = 0.0
    callback_delay: float = 5.0
    timeout_sleep: float = 35.0
    result_ttl: float = 86_400.0
    texture: str = "flat"
    # 0: every prompt-only task gets a picture of its own. N: such tasks share N pictures
    # per size and format, each rendered once, which keeps the sandbox cheap per task.
    distinct_pictures: int = 0
    log_requests: bool = True

    @classmethod
    def unthrottled(cls, **knobs: Any) -> "SandboxConfig":
        """A config for benchmarks: no latency, no limits in reach, no faults, quiet."""
        return cls().with_knobs(mode="unthrottled", **knobs)

    def with_knobs(self, **knobs: Any) -> "SandboxConfig":
        """Return a copy with `knobs` applied; raise ValueError for a bad name or value.

        `mode` names a preset from MODES; it is applied first, so other knobs given with it
        win over the preset's.
        """
        if "mode" in knobs:
            mode = knobs.pop("mode")
            if mode not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            return self.with_knobs(**MODES[mode]).with_knobs(**knobs)
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for name, value in knobs.items():
            if name not in fields:
                raise ValueError(f"unknown knob {name!r}")
            if name == "latency":
                changes[name] = self._merged_latency(value)
                continue
            kind = fields[name].type
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            else:
                try:
                    value = kind(value)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{name} must be a {kind.__name__}") from exc
            if name.startswith("rate_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
            if kind in (int, float) and name != "seed" and value < 0:
                raise ValueError(f"{name} must not be negative")
            if name == "texture" and value not in TEXTURES:
                raise ValueError(f"texture must be one of {', '.join(TEXTURES)}")
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def _merged_latency(self, value: Any) -> dict[str, float]:
        if not isinstance(value, dict) or not set(value) <= set(STATES):
            raise ValueError(f"latency must be a dict with keys among {', '.join(STATES)}")
        merged = {**self.latency}
        for state, seconds in value.items():
            if not isinstance(seconds, int | float) or seconds < 0:
                raise ValueError(f"latency[{state!r}] must be a non-negative number")
            merged[state] = float(seconds)
        return merged


# Far beyond what any client sends, so the sandbox never throttles the app under benchmark.
UNTHROTTLED_LIMIT = 100_000
# Enough that a review page of outputs does not look like one picture repeated.
UNTHROTTLED_PICTURES = 16
MODES: dict[str, dict[str, Any]] = {
    # For benchmarks: tasks finish at once, no limit or fault gets in the way, and the
    # sandbox spends as little CPU as it can on each call.
    "unthrottled": {
        "latency": dict.fromkeys(STATES, 0.0),
        "submit_limit": UNTHROTTLED_LIMIT,
        "query_limit": UNTHROTTLED_LIMIT,
        "callback_delay": 0.0,
        "distinct_pictures": UNTHROTTLED_PICTURES,
        "log_requests": False,
        **{f.name: 0.0 for f in dataclasses.fields(SandboxConfig) if f.name.startswith("rate_")},
    },
}
