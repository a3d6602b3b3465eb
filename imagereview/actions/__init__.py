"""The use cases. Views, commands and tasks call these; writes happen only here.

Provider calls happen outside transactions; every write re-reads and locks its row first, so
each action can run twice (or concurrently) and the second run does nothing.
"""

from imagereview.actions.account import close_circuit, ensure_credits, open_circuit, probe_circuit
from imagereview.actions.callbacks import record_callback
from imagereview.actions.claims import claim
from imagereview.actions.completion import apply_task_record, refresh_generation
from imagereview.actions.reconcile import reconcile, retry_generation
from imagereview.actions.requests import ReferenceUpload, create_request, settle_request
from imagereview.actions.review import (
    DecisionConflict,
    DecisionRefused,
    decide,
    latest_verdicts,
    request_changes,
    tally,
)
from imagereview.actions.storage import store_outputs
from imagereview.actions.submission import submit_generation
from imagereview.actions.undo import undo_decision
from imagereview.limits import backoff

__all__ = [
    "DecisionConflict",
    "DecisionRefused",
    "claim",
    "request_changes",
    "tally",
    "undo_decision",
    "ReferenceUpload",
    "apply_task_record",
    "backoff",
    "close_circuit",
    "create_request",
    "decide",
    "ensure_credits",
    "latest_verdicts",
    "open_circuit",
    "probe_circuit",
    "reconcile",
    "record_callback",
    "refresh_generation",
    "retry_generation",
    "settle_request",
    "store_outputs",
    "submit_generation",
]
