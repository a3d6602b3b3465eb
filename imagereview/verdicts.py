"""Where an output stands, from the decisions that count: each reviewer's latest verdict,
undone ones left out. Pure: the callers fetch the decision rows, for one request or many."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from imagereview.models import Decision

V = Decision.Verdict
# How long a reviewer may take back their own approve or reject.
UNDO_WINDOW = timedelta(seconds=30)
# Who gave a verdict: a reviewer's id, a guest's (link id, name), None for the acceptance rules.
Decider = int | tuple[int, str] | None
# (output_id, decider, verdict), oldest first.
DecisionRow = tuple[int, Decider, str]


def decider(reviewer_id: int | None, guest_link_id: int | None, guest_name: str) -> Decider:
    """Tell deciders apart: a guest by the link used and the name given (in any case)."""
    if guest_link_id is not None:
        return (guest_link_id, guest_name.strip().casefold())
    return reviewer_id


def approver(who: Decider) -> Decider:
    """Whose approval it is: the guests of one link count as one approver, since anyone
    holding the link can type any name."""
    return (who[0], "") if isinstance(who, tuple) else who


@dataclass
class OutputTally:
    """Where one output stands: the latest counting verdict of each reviewer."""

    approvals: set[Decider] = field(default_factory=set)
    rejected: bool = False
    changes: bool = False
    decided_by_me: str = ""

    @property
    def verdict(self) -> str:
        if self.rejected:
            return V.REJECT
        if self.changes:
            return V.CHANGES
        return V.APPROVE if self.approvals else ""

    def approved(self, required_approvals: int) -> bool:
        """Approved by enough distinct reviewers, and rejected by none."""
        return not self.rejected and len(self.approvals) >= required_approvals


def standings(rows: Iterable[DecisionRow], *, viewer_id: Decider = None) -> dict[int, OutputTally]:
    """Each output's standing from its counting decisions, given oldest first."""
    latest: dict[tuple[int, Decider], str] = {}
    for output_id, reviewer_id, verdict in rows:
        latest[(output_id, reviewer_id)] = verdict
    tallies: dict[int, OutputTally] = {}
    for (output_id, reviewer_id), verdict in latest.items():
        standing = tallies.setdefault(output_id, OutputTally())
        if verdict == V.APPROVE:
            standing.approvals.add(approver(reviewer_id))
        elif verdict == V.REJECT:
            standing.rejected = True
        else:
            standing.changes = True
        if viewer_id is not None and reviewer_id == viewer_id:
            standing.decided_by_me = verdict
    return tallies


def counting_rows(**filters: object) -> Iterable[DecisionRow]:
    """The decisions that count, oldest first, as rows for `standings`."""
    rows = (
        Decision.objects.filter(undone_at__isnull=True, **filters)
        .order_by("created_at", "id")
        .values_list("output_id", "reviewer_id", "guest_link_id", "guest_name", "verdict")
    )
    return (
        (output, decider(reviewer, link, name), verdict)
        for output, reviewer, link, name, verdict in rows
    )
