"""Run state: node-instance records, frames, constructs, context and the run's status.

The state is plain data. Node statuses move only along :data:`NODE_TRANSITIONS` (monotonic,
first writer wins): :func:`set_node_status` is the only place that changes one, keeps the run's
counters in step and refuses anything else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum

from flowcraft.core._engine.frames import ROOT, InstanceKey
from flowcraft.core._engine.plan import Plan

#: A stored record's key: its kind, then what identifies it within the run (see ``records.py``).
RecordKey = tuple[str | int, ...]


class RunStatus(StrEnum):
    """Status of a run. Completed, failed and cancelled are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING = "awaiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether nothing can change this status any more."""
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class NodeStatus(StrEnum):
    """Status of a node instance."""

    PENDING = "pending"  # ready, or waiting for a retry timer
    RUNNING = "running"
    SLEEPING = "sleeping"
    AWAITING = "awaiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


_S = NodeStatus
#: The only node transitions there are. Anything else is refused (duplicates never move back).
NODE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.SLEEPING, _S.AWAITING, _S.SKIPPED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.PENDING, _S.SUCCEEDED, _S.FAILED, _S.AWAITING, _S.CANCELLED}),
    _S.SLEEPING: frozenset({_S.SUCCEEDED, _S.CANCELLED}),
    _S.AWAITING: frozenset({_S.SUCCEEDED, _S.RUNNING, _S.FAILED, _S.CANCELLED}),
    _S.SUCCEEDED: frozenset(),
    _S.FAILED: frozenset(),
    _S.SKIPPED: frozenset(),
    _S.CANCELLED: frozenset(),
}
#: Statuses that keep a run busy (it cannot complete or be awaiting while one exists).
BUSY = frozenset({_S.PENDING, _S.RUNNING, _S.SLEEPING})


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeError:
    """A structured node error. The original exception type and message are never lost."""

    node_id: str
    frame: str
    attempt: int
    type: str
    message: str
    traceback: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (what a fallback handler receives as ``error``)."""
        return {
            "node_id": self.node_id,
            "frame": self.frame,
            "attempt": self.attempt,
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
        }


@dataclass(slots=True, kw_only=True)
class NodeRecord:
    """One node instance."""

    node_id: str
    frame: str
    status: NodeStatus = NodeStatus.PENDING
    attempt: int = 0
    input: object = None
    output: object = None
    action: str | None = None
    error: NodeError | None = None
    token: str | None = None
    child_run_id: str | None = None
    #: Set on a failed node whose fallback handler stands in for it.
    fallback_for: str | None = None
    resolved: bool = False
    resumed: bool = False
    #: When the pending timer of this instance (retry or sleep) is due (event time + delay).
    due_at: float | None = None
    #: When the current attempt was started (decided), and when it ended (the attempt's
    #: outcome time; None while it runs). Epoch seconds, for people and tools, never decisions.
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def key(self) -> InstanceKey:
        """(node id, frame)."""
        return (self.node_id, self.frame)


@dataclass(slots=True, kw_only=True)
class Arrival:
    """What reached a node along one incoming edge: taken (with a value) or pruned."""

    taken: bool
    source: str
    value: object = None


@dataclass(slots=True, kw_only=True)
class FrameState:
    """One frame: the plan level it runs, its join arrivals and how much is left to resolve."""

    frame: str
    plan: Plan
    owner: InstanceKey | None
    input: object
    #: Position of this frame within its construct (map item index, loop iteration).
    index: int = 0
    arrivals: dict[str, dict[int, Arrival]] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    open: int = 0
    dead: bool = False


@dataclass(slots=True, kw_only=True)
class ConstructState:
    """Progress of a loop or map node instance (one attempt)."""

    key: InstanceKey
    attempt: int
    items: list[object] = field(default_factory=list)
    next_index: int = 0
    active: set[int] = field(default_factory=set)
    results: dict[int, object] = field(default_factory=dict)
    value: object = None
    frames: list[str] = field(default_factory=list)
    done: bool = False


@dataclass(slots=True, kw_only=True)
class RunState:
    """Everything the decision core knows about one run."""

    run_id: str
    plan: Plan
    status: RunStatus = RunStatus.PENDING
    input: object = None
    context: dict[str, object] = field(default_factory=dict)
    nodes: dict[InstanceKey, NodeRecord] = field(default_factory=dict)
    frames: dict[str, FrameState] = field(default_factory=dict)
    constructs: dict[InstanceKey, ConstructState] = field(default_factory=dict)
    tokens: dict[str, InstanceKey] = field(default_factory=dict)
    errors: list[NodeError] = field(default_factory=list)
    output: object = None
    busy: int = 0
    awaiting: int = 0
    #: Terminal and nothing runs any more: the final result is published (once).
    settled: bool = False
    #: The W3C traceparent of the run's root span when the run is traced (set when the run is
    #: created, never by the decision core; stored in the header, carried by its jobs).
    trace: str | None = None
    #: Keys of the stored records this state changed since it was last saved (see
    #: ``records.py``); None: nobody stores this state record by record (nothing is tracked).
    changes: set[RecordKey] | None = None

    def touch(self, *key: str | int) -> None:
        """Note that the stored record ``key`` changed (a no-op unless changes are tracked)."""
        if self.changes is not None:
            self.changes.add(key)

    @property
    def root(self) -> FrameState:
        """The root frame."""
        return self.frames[ROOT]

    def clone(self) -> RunState:
        """A deep copy (plans are shared: they are immutable)."""
        memo: dict[int, object] = {id(self.plan): self.plan}
        for frame in self.frames.values():
            memo[id(frame.plan)] = frame.plan
        return copy.deepcopy(self, memo)


class TransitionError(RuntimeError):
    """An illegal node transition was attempted: a bug in the core, never a user mistake."""


def set_node_status(state: RunState, record: NodeRecord, status: NodeStatus) -> None:
    """Move ``record`` to ``status`` along :data:`NODE_TRANSITIONS`, keeping counters in step."""
    if status not in NODE_TRANSITIONS[record.status]:
        raise TransitionError(f"{record.key}: {record.status} -> {status} is not allowed")
    state.busy += (status in BUSY) - (record.status in BUSY)
    state.awaiting += (status is NodeStatus.AWAITING) - (record.status is NodeStatus.AWAITING)
    record.status = status
    state.touch("n", record.frame, record.node_id)
