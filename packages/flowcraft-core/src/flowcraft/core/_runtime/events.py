"""Typed lifecycle events and the event bus.

Every event carries ``run_id`` and ``at`` (epoch seconds); node events also carry ``node_id``,
``frame`` and ``attempt``. Emitting never blocks execution and a failing listener never fails a
run: sync listeners are called in a guard, async listeners are scheduled as tasks, and any
exception they raise is logged on ``flowcraft.events``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowcraft.core._engine.state import NodeError

_log = logging.getLogger("flowcraft.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowEvent:
    """Base of every lifecycle event."""

    run_id: str
    at: float


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
    """An attempt started."""


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
