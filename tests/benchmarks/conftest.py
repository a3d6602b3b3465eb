from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.benchmarks.stack import Service


@pytest.fixture
def start_service(cluster_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start any command (gunicorn, the sandbox, a load generator) on the test database and
    with the cluster's environment plus `extra_env`; stop each at the end."""
    started: list[Service] = []

    def start(name: str, argv: list[str], **extra_env: str) -> Service:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        service = Service(argv, {**cluster_env, **extra_env}, log_path)
        started.append(service)
        return service

    yield start
    for service in reversed(started):
        service.stop()
