"""Actions: what the runtime must do after a decision, and notices for the event bus."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowcraft.core._engine.events import TimerPurpose
from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.state import NodeError, NodeStatus, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunNode:
    """Run one attempt of a node implementation."""

    node_id: str
    frame: str = ROOT
    attempt: int
    uses: str
    params: Mapping[str, object]
    input: object
    timeout: float | None
    idempotency_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleTimer:
    """Fire :class:`~flowcraft.core._engine.events.TimerFired` after ``delay`` seconds."""

    node_id: str
    frame: str = ROOT
    attempt: int
    purpose: TimerPurpose
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChildRun:
    """Start (idempotently, by ``child_run_id``) a child run of ``blueprint``."""

    node_id: str
    frame: str = ROOT
    attempt: int
    child_run_id: str
    blueprint: str
    input: object


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelChildRun:
    """Cancel a child run."""

    child_run_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeChildRun:
    """Forward a resume to the child run that owns the awaiting node."""

    child_run_id: str
    node_id: str | None
    frame: str
    token: str | None
    output: object
    action: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelNode:
    """Cooperatively cancel a running attempt."""

    node_id: str
    frame: str = ROOT
    attempt: int


Action = RunNode | ScheduleTimer | StartChildRun | CancelChildRun | ResumeChildRun | CancelNode


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeNotice:
    """A node instance changed status (for the event bus)."""

    node_id: str
    frame: str
    attempt: int
    status: NodeStatus
    retrying: bool = False
    error: NodeError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunNotice:
    """The run changed status (for the event bus)."""

    status: RunStatus


Notice = NodeNotice | RunNotice


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """The event was a user mistake (e.g. resuming a node that is not awaiting)."""

    code: str
    message: str


@dataclass(slots=True, kw_only=True)
class Decision:
    """What one event led to."""

    actions: list[Action] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    rejection: Rejection | None = None
    #: The run's status changed to this terminal status with this event (exactly once per run).
    finished: RunStatus | None = None
    #: The run is terminal and nothing runs any more: publish the final result (exactly once).
    settled: bool = False
    #: Context keys this event wrote (DELETED values delete), for stores that write per key.
    context_writes: dict[str, object] = field(default_factory=dict)
