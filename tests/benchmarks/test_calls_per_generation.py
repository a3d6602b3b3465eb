"""Provider calls per stored generation, and how soon a finished task is ready for review:
the same work with callbacks, then by polling alone."""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import AbstractBaseUser

from imagereview.models import Generation
from imagereview.providers.sandbox import SandboxServer
from tests.benchmarks.support import (
    CREATE,
    QUERY,
    SandboxAPI,
    log_tails,
    percentile,
    print_table,
    queue_requests,
    quiet_logs,
    requests_generating,
    wait_until,
)
from tests.conftest import ManagedProcess

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

GENERATIONS = 60
# Seconds per provider state: long enough that a poll can find a task still running.
LATENCY = {"waiting": 1.0, "queuing": 1.0, "generating": 4.0}


@dataclass
class Run:
    label: str
    calls: dict[str, int]
    stored: list[Generation]
    # Seconds from the provider's completion to stored_at ("ready for review").
    ready_after: list[float] = field(default_factory=list)

    @property
    def calls_per_generation(self) -> float:
        return (self.calls[CREATE] + self.calls[QUERY]) / len(self.stored)

    @property
    def api_calls_per_generation(self) -> float:
        """Every API call, credit checks and fresh links included (result files are not)."""
        return sum(n for path, n in self.calls.items() if path.startswith("/api/")) / len(
            self.stored
        )


def run_workload(
    sandbox: SandboxServer,
    start_process: Callable[..., ManagedProcess],
    requester: AbstractBaseUser,
    *,
    callbacks: bool,
    seed: int,
) -> Run:
    """Queue the same kind of work, wait for it, and count the provider calls it made."""
    before = dict(sandbox.stats["calls"])
    env = {"KIE_CALLBACKS": str(callbacks).lower()}
    processes = {"qcluster": start_process("qcluster", **env)}
    processes["dispatch"] = start_process("dispatch", **env)
    request_ids = queue_requests(requester, count=GENERATIONS // 2, seed=seed, variants=(2,))
    finished = wait_until(lambda: not requests_generating(request_ids), timeout=300)
    # Stopped before counting, so that every call this run caused is in the figures.
    for process in processes.values():
        process.stop()
    assert finished, f"requests still generating\n{log_tails(processes)}"
    after = sandbox.stats["calls"]
    return Run(
        label="callbacks" if callbacks else "polling only",
        calls={path: n - before.get(path, 0) for path, n in after.items()},
        stored=list(
            Generation.objects.filter(request_id__in=request_ids, state=Generation.State.STORED)
        ),
    )


def measure_readiness(sandbox: SandboxServer, runs: list[Run]) -> None:
    """Ask the sandbox once per task when it completed, after the counted runs."""
    sandbox.configure(query_limit=100_000)
    with SandboxAPI(sandbox) as api:
        for run in runs:
            for generation in run.stored:
                completed = api.record(generation.provider_task_id)["completeTime"] / 1000
                stored = generation.stored_at.timestamp()
                run.ready_after.append(stored - completed)


def test_callbacks_keep_calls_per_generation_low(sandbox, start_process, requester):
    sandbox.configure(latency=LATENCY)
    with quiet_logs():
        runs = [
            # The same prompts and parameters both times.
            run_workload(sandbox, start_process, requester, callbacks=True, seed=1),
            run_workload(sandbox, start_process, requester, callbacks=False, seed=1),
        ]
        measure_readiness(sandbox, runs)

    with_callbacks, polling = runs
    print_table(
        f"Provider calls per stored generation ({GENERATIONS} generations per run, "
        f"task latency {sum(LATENCY.values()):g} s, app settings at their defaults)",
        [
            ("generations stored", *(len(run.stored) for run in runs)),
            ("createTask calls", *(run.calls[CREATE] for run in runs)),
            ("recordInfo calls", *(run.calls[QUERY] for run in runs)),
            ("calls per stored generation", *(f"{run.calls_per_generation:.2f}" for run in runs)),
            (
                "all API calls per stored generation",
                *(f"{run.api_calls_per_generation:.2f}" for run in runs),
            ),
            *(
                (f"ready after completion, p{share * 100:.0f} (s)",)
                + tuple(f"{percentile(run.ready_after, share):.2f}" for run in runs)
                for share in (0.5, 0.95)
            ),
            ("ready after completion, max (s)", *(f"{max(run.ready_after):.2f}" for run in runs)),
        ],
        headers=[run.label for run in runs],
    )
    assert len(with_callbacks.stored) == len(polling.stored) == GENERATIONS
    assert with_callbacks.calls_per_generation <= 2.2
