"""Events: what happened, told to the decision core. Every event carries its time ``at``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.state import NodeError


class _Deleted:
    """The value of a context write that deletes the key."""

    _instance: _Deleted | None = None

    def __new__(cls) -> _Deleted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETED"

    def __deepcopy__(self, memo: dict[int, object]) -> _Deleted:
        return self


DELETED = _Deleted()


class TimerPurpose(StrEnum):
    """Why a timer was set."""

    RETRY = "retry"
    SLEEP = "sleep"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted:
    """The run starts with ``input``."""

    at: float
    input: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSucceeded:
    """An attempt finished with an output, an optional action and buffered context writes."""

    at: float
    node_id: str
    frame: str = ROOT
    attempt: int
    output: object = None
    action: str | None = None
    context_writes: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed:
    """An attempt raised (or timed out). ``retryable=False`` skips the remaining attempts."""

    at: float
    node_id: str
    frame: str = ROOT
    attempt: int
    error: NodeError
    retryable: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSuspended:
    """A running node asked to wait (human in the loop) instead of returning."""

    at: float
    node_id: str
    frame: str = ROOT
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeResumed:
    """Resume an awaiting node by (node_id, frame) or by its token."""

    at: float
    node_id: str | None = None
    frame: str = ROOT
    token: str | None = None
    output: object = None
    action: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired:
    """A retry delay or a sleep is over."""

    at: float
    node_id: str
    frame: str = ROOT
    attempt: int
    purpose: TimerPurpose


class ChildOutcome(StrEnum):
    """How a child run of a subflow node stands."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    AWAITING = "awaiting"
    RUNNING = "running"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRunChanged:
    """The child run of a subflow node completed, failed, was cancelled, awaits or runs again."""

    at: float
    node_id: str
    frame: str = ROOT
    attempt: int
    outcome: ChildOutcome
    output: object = None
    outputs: Mapping[str, object] = field(default_factory=dict)
    error: NodeError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested:
    """Cancel the run (durable and idempotent)."""

    at: float
    reason: str = "cancelled"


Event = (
    RunStarted
    | NodeSucceeded
    | NodeFailed
    | NodeSuspended
    | NodeResumed
    | TimerFired
    | ChildRunChanged
    | CancelRequested
)
