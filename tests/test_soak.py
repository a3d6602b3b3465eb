"""A short fault soak: every sandbox fault on, the cluster SIGKILLed mid-run, and afterwards
every provider task accounted for, stored once and costed."""

import pytest

from tests.benchmarks.support import (
    audit_tasks,
    describe,
    print_table,
    requests_generating,
    run_soak,
    soak_figures,
)

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def test_every_task_is_accounted_for_after_faults_and_kills(sandbox, start_process, requester):
    soak = run_soak(
        sandbox=sandbox,
        start_process=start_process,
        requester=requester,
        requests=24,
        seed=7,
        kill_moments=[2.5, 7.0, 12.0],
        # Above the provider's 20 per 10 s, so that the short run is spent on faults.
        submit_limit=40,
        timeout=90,
    )

    assert not requests_generating(soak.request_ids), (
        f"requests still generating after {soak.elapsed:.0f}s: {soak.pending}\n{soak.logs}"
    )
    audit = audit_tasks(sandbox, soak=soak)
    print_table(f"Fault soak (short), {describe(soak.env)}", soak_figures(soak, audit, sandbox))
    problems = audit.problems
    assert not problems, "\n".join(problems)
    assert not soak.pending, f"still pending after {soak.elapsed:.0f}s: {soak.pending}"
