"""Typed lifecycle events and the event bus.

Every event carries ``run_id`` and ``at`` (epoch seconds); node events also carry ``node_id``,
``frame`` and ``attempt``. Emitting never blocks execution and a failing listener never fails a
run: sync listeners are called in a guard, async listeners are scheduled as tasks, and any
exception they raise is logged on ``flowcraft.events``.

The same events, built by :func:`event_of` from the decision core's notices, come from every
runtime. In memory (``FlowRuntime.events``) each is emitted once. Distributed
(``Worker.events``, ``Client.events``), the process that made a decision emits its events right
after the save of that decision committed (a decision that lost its compare-and-set, or that
changed nothing, emits nothing), so a duplicate delivery never repeats one; if that process dies
between its save and the emit, they are lost (at most once). :class:`NodeStarted` is the
exception: the worker that starts the attempt emits it, once per execution (see there).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowcraft.core._engine.actions import NodeNotice, RunNotice
from flowcraft.core._engine.state import NodeError, NodeStatus, RunState, RunStatus

_log = logging.getLogger("flowcraft.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowEvent:
    """Base of every lifecycle event.

    ``blueprint`` and ``version`` name the run's blueprint ("" where the emitter does not know
    it, e.g. a message dead-lettered before it could be decoded); ``trace`` is the W3C
    ``traceparent`` of the run's root span when the run is traced (``flowcraft.core.otel``).
    """

    run_id: str
    at: float
    blueprint: str = ""
    version: str = ""
    trace: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent(FlowEvent):
    """Base of run lifecycle events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(RunEvent):
    """The run started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAwaiting(RunEvent):
    """Nothing can run until a waiting node is resumed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed(RunEvent):
    """An awaiting run runs again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCompleted(RunEvent):
    """The run completed with ``output``."""

    output: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(RunEvent):
    """The run failed with ``errors``."""

    errors: tuple[NodeError, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCancelled(RunEvent):
    """The run was cancelled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEvent(FlowEvent):
    """Base of node lifecycle events."""

    node_id: str
    frame: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarted(NodeEvent):
    """An attempt started.

    Distributed, the worker that runs the attempt emits it as it starts it: once per execution,
    so at least once per attempt (an attempt run again after its worker crashed, or whose lease
    lapsed, starts again with the same ``attempt``). An attempt that never runs (its run was
    cancelled or failed first) has none.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSucceeded(NodeEvent):
    """The instance succeeded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed(NodeEvent):
    """The instance failed for good."""

    error: NodeError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRetrying(NodeEvent):
    """An attempt failed and another will follow."""

    error: NodeError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSkipped(NodeEvent):
    """The node was skipped (dead-path elimination)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAwaiting(NodeEvent):
    """The node waits for ``resume``; ``token`` names it."""

    token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeResumed(NodeEvent):
    """An awaiting node was resumed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSleeping(NodeEvent):
    """A durable sleep started."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCancelled(NodeEvent):
    """The instance was cancelled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDeadLettered(FlowEvent):
    """A worker dead-lettered a queue message (``run_id`` "" if it could not be decoded)."""

    message_id: str
    reason: str
    node_id: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseLost(FlowEvent):
    """A running attempt's lease could not be renewed (another worker may run it again)."""

    node_id: str
    frame: str
    attempt: int
    worker: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReconciled(FlowEvent):
    """The reconciler put a stalled run's lost work back.

    ``jobs`` re-enqueued, ``resent`` outbox messages sent again, ``started`` if it started a
    run that was recorded but never started.
    """

    jobs: int = 0
    resent: int = 0
    started: bool = False


Listener = Callable[[FlowEvent], object]


class EventBus:
    """Delivers lifecycle events to listeners without ever blocking or failing a run."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, tuple[type[FlowEvent], ...]]] = []
        self._tasks: set[asyncio.Future[object]] = set()

    def subscribe(self, listener: Listener, *types: type[FlowEvent]) -> Callable[[], None]:
        """Call ``listener`` for every event (or only events of ``types``); returns unsubscribe."""
        entry = (listener, types or (FlowEvent,))
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry)

    def emit(self, event: FlowEvent) -> None:
        """Deliver ``event``; listener failures are logged, never raised."""
        for listener, types in self._listeners:
            if isinstance(event, types):
                self._deliver(listener, event)

    @property
    def has_listeners(self) -> bool:
        """Whether anyone listens (lets the runtime skip building events)."""
        return bool(self._listeners)

    def _deliver(self, listener: Listener, event: FlowEvent) -> None:
        try:
            outcome = listener(event)
        except Exception:
            _log.exception("event listener %r failed on %s", listener, type(event).__name__)
            return
        if inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("async event listener failed", exc_info=task.exception())


def event_of(
    notice: NodeNotice | RunNotice, state: RunState, *, at: float, first: bool
) -> FlowEvent | None:
    """The public event of a decision's ``notice``, over ``state`` (the run after the decision).

    ``first``: the decision applied the run's start (a run that runs again is resumed). None
    for a notice no event reports (a node back to pending without a retry).
    """
    if isinstance(notice, RunNotice):
        return _run_event(notice.status, state, at, first)
    common: dict[str, Any] = {
        **run_fields(state, at),
        "node_id": notice.node_id,
        "frame": notice.frame,
        "attempt": notice.attempt,
    }
    status = notice.status
    if status is NodeStatus.PENDING:
        return NodeRetrying(error=notice.error, **common) if notice.retrying else None
    if status is NodeStatus.FAILED:
        return NodeFailed(error=notice.error, **common)
    record = state.nodes.get((notice.node_id, notice.frame))
    if status is NodeStatus.SUCCEEDED:
        resumed = record is not None and record.resumed
        return NodeResumed(**common) if resumed else NodeSucceeded(**common)
    if status is NodeStatus.AWAITING:
        return NodeAwaiting(token=record.token if record else None, **common)
    return _NODE_EVENTS[status](**common)


def run_fields(state: RunState, at: float) -> dict[str, Any]:
    """The fields every event of ``state``'s run carries (run id, time, blueprint, trace)."""
    plan = state.plan
    return {
        "run_id": state.run_id,
        "at": at,
        "blueprint": plan.id,
        "version": plan.version,
        "trace": state.trace,
    }


def _run_event(status: RunStatus, state: RunState, at: float, first: bool) -> FlowEvent:
    common = run_fields(state, at)
    if status is RunStatus.COMPLETED:
        return RunCompleted(output=state.output, **common)
    if status is RunStatus.FAILED:
        return RunFailed(errors=tuple(state.errors), **common)
    if status is RunStatus.RUNNING and not first:
        return RunResumed(**common)
    return _RUN_EVENTS[status](**common)


_NODE_EVENTS: dict[NodeStatus, Callable[..., FlowEvent]] = {
    NodeStatus.RUNNING: NodeStarted,
    NodeStatus.SKIPPED: NodeSkipped,
    NodeStatus.SLEEPING: NodeSleeping,
    NodeStatus.CANCELLED: NodeCancelled,
}
_RUN_EVENTS: dict[RunStatus, Callable[..., FlowEvent]] = {
    RunStatus.RUNNING: RunStarted,
    RunStatus.AWAITING: RunAwaiting,
    RunStatus.CANCELLED: RunCancelled,
}
