"""The fault soak, longer: a few hundred requests, every sandbox fault on, two clusters
SIGKILLed at seeded random moments, then every provider task audited."""

import random

import pytest

from tests.benchmarks.support import (
    audit_tasks,
    describe,
    print_table,
    quiet_logs,
    requests_generating,
    run_soak,
    soak_figures,
)

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cluster,
    pytest.mark.django_db(transaction=True),
]

SEED = 2026
REQUESTS = 300
TIMEOUT = 900


def kill_moments(seed: int, *, until: float) -> list[float]:
    """Seeded moments 15 to 45 s apart, from the start of a run."""
    rng = random.Random(seed)
    moments = [rng.uniform(3, 15)]
    while moments[-1] < until:
        moments.append(moments[-1] + rng.uniform(15, 45))
    return moments


def test_hundreds_of_requests_survive_faults_and_kills(sandbox, start_process, requester):
    with quiet_logs():
        soak = run_soak(
            sandbox=sandbox,
            start_process=start_process,
            requester=requester,
            requests=REQUESTS,
            seed=SEED,
            kill_moments=kill_moments(SEED, until=TIMEOUT),
            clusters=2,
            # The app's default lease. At this volume an 8 s lease is shorter than the
            # broker's backlog, and every pass re-sends each leased job: the queue floods.
            env={"DISPATCH_LEASE": "30"},
            timeout=TIMEOUT,
        )
        assert not requests_generating(soak.request_ids), (
            f"requests still generating after {soak.elapsed:.0f}s: {soak.pending}\n{soak.logs}"
        )
        audit = audit_tasks(sandbox, soak=soak)
    print_table(
        f"Fault soak: {REQUESTS} requests, seed {SEED}, {describe(soak.env)}",
        soak_figures(soak, audit, sandbox),
    )
    problems = audit.problems
    assert not problems, "\n".join(problems)
    assert not soak.pending, f"still pending after {soak.elapsed:.0f}s: {soak.pending}"
