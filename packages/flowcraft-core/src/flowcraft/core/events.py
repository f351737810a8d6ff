"""Typed lifecycle events of runs and nodes (public): subscribe with ``runtime.events``.

from flowcraft.core import events

runtime.events.subscribe(print)                                  # every event
runtime.events.subscribe(on_failure, events.NodeFailed, events.RunFailed)

Lifecycle events as log records: ``EventLogger().attach(bus)`` (one record per event on
``flowcraft.lifecycle``, the event's fields as record attributes), ``JsonFormatter`` for one JSON
object per line.

Distributed, the same events come from ``Worker.events`` and ``Client.events`` (pass one
``EventBus`` as ``events=`` to several of them): each process emits the events of the decisions
it saved, once they are saved, and a worker the starts of the attempts it runs.
"""

from flowcraft.core._runtime.events import (
    EventBus,
    FlowEvent,
    LeaseLost,
    Listener,
    MessageDeadLettered,
    NodeAwaiting,
    NodeCancelled,
    NodeEvent,
    NodeFailed,
    NodeResumed,
    NodeRetrying,
    NodeSkipped,
    NodeSleeping,
    NodeStarted,
    NodeSucceeded,
    RunAwaiting,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunReconciled,
    RunResumed,
    RunStarted,
)
from flowcraft.core._runtime.logs import LIFECYCLE_LOGGER, EventLogger, JsonFormatter

__all__ = [
    "LIFECYCLE_LOGGER",
    "EventBus",
    "EventLogger",
    "FlowEvent",
    "JsonFormatter",
    "LeaseLost",
    "Listener",
    "MessageDeadLettered",
    "NodeAwaiting",
    "NodeCancelled",
    "NodeEvent",
    "NodeFailed",
    "NodeResumed",
    "NodeRetrying",
    "NodeSkipped",
    "NodeSleeping",
    "NodeStarted",
    "NodeSucceeded",
    "RunAwaiting",
    "RunCancelled",
    "RunCompleted",
    "RunEvent",
    "RunFailed",
    "RunReconciled",
    "RunResumed",
    "RunStarted",
]
