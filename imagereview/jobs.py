"""Enqueueing background jobs (the entry points live in `tasks.py`)."""

import os
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django_q.brokers import Broker, get_broker
from django_q.tasks import async_task

_brokers: dict[int, Broker] = {}


def broker() -> Broker:
    """This process's broker: django-q2 would otherwise open a new one (for Redis, a new
    client and connection) for every job enqueued."""
    pid = os.getpid()
    if pid not in _brokers:
        _brokers.clear()
        _brokers[pid] = get_broker()
    return _brokers[pid]


def dispatch_lease() -> timedelta:
    """How long sent work waits on its job before the dispatcher sends it again."""
    return timedelta(seconds=settings.DISPATCH_LEASE)


def enqueue(job: str, *args: object) -> None:
    """Put `imagereview.tasks.<job>(*args)` on the cluster's queue now."""
    async_task(
        f"imagereview.tasks.{job}",
        *args,
        task_name=f"{job}:{':'.join(map(str, args))}",
        broker=broker(),
    )


def enqueue_after_commit(job: str, *args: object) -> None:
    """Enqueue once the current transaction commits, so the job sees what it wrote."""
    transaction.on_commit(partial(enqueue, job, *args))


def backlog() -> int:
    """Jobs waiting in the broker for a worker."""
    return broker().queue_size()
