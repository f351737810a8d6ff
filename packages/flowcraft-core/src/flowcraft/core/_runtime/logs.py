"""Lifecycle events as log records: one subscriber on the event bus, and a JSON formatter.

:class:`EventLogger` turns every event it is given into one record on ``flowcraft.lifecycle``
with the event's fields as record attributes (``run_id``, ``node_id``, ``frame``, ``attempt``,
``blueprint``, ``blueprint_version``, ``duration``, ...), so a formatter or a log shipper reads
them without parsing the message. Levels: a node's outcome at INFO (one line per node, like
``node fetch#1 of run 4f2 succeeded in 0.012s``), its start, skip and sleep at DEBUG, a retry
or a lost lease at WARNING, a failure, a failed run or a dead-lettered message at ERROR.

Durations are measured between the events this logger saw: a node's from its start (emitted
by the worker that runs it, which usually saves its outcome too), a run's from its start.
Where the start was seen elsewhere (another process), ``duration`` is absent.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flowcraft.core._runtime import events as e

__all__ = ["LIFECYCLE_LOGGER", "EventLogger", "JsonFormatter"]

#: The logger lifecycle records go to.
LIFECYCLE_LOGGER = "flowcraft.lifecycle"
#: Starts remembered for durations (oldest forgotten first).
_REMEMBERED = 10_000

_NodeKey = tuple[str, str, str, int]


class EventLogger:
    """Logs each lifecycle event it is called with (a bus listener: ``bus.subscribe(logger)``).

    Args:
        logger: Where the records go (default: ``flowcraft.lifecycle``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LIFECYCLE_LOGGER)
        self._node_starts: OrderedDict[_NodeKey, float] = OrderedDict()
        self._run_starts: OrderedDict[str, float] = OrderedDict()

    def attach(self, bus: e.EventBus) -> Callable[[], None]:
        """Subscribe to every event of ``bus``; returns the unsubscribe function."""
        return bus.subscribe(self)

    def __call__(self, event: e.FlowEvent) -> None:
        """Log ``event`` (an event type it does not know is logged at DEBUG by its name)."""
        level, text, fields = self._describe(event)
        if not self.logger.isEnabledFor(level):
            return
        extra = {**_common(event), **fields}
        self.logger.log(level, text, extra={k: v for k, v in extra.items() if v is not None})

    def _describe(self, event: e.FlowEvent) -> tuple[int, str, dict[str, Any]]:
        if isinstance(event, e.NodeEvent):
            return self._node(event)
        if isinstance(event, e.RunEvent):
            return self._run(event)
        return _other(event)

    def _node(self, event: e.NodeEvent) -> tuple[int, str, dict[str, Any]]:
        key = (event.run_id, event.node_id, event.frame, event.attempt)
        if isinstance(event, e.NodeStarted):
            _remember(self._node_starts, key, event.at)
            return logging.DEBUG, f"{_node_name(event)} started", {}
        began = self._node_starts.pop(key, None)
        duration = None if began is None else max(0.0, event.at - began)
        level, (word, detail), fields = _node_outcome(event)
        took = "" if duration is None else f" in {duration:.3f}s"
        text = f"{_node_name(event)} {word}{took}{detail}"
        return level, text, {**fields, "duration": duration}

    def _run(self, event: e.RunEvent) -> tuple[int, str, dict[str, Any]]:
        name = f"run {event.run_id} ({event.blueprint} {event.version})".replace(" ( )", "")
        if isinstance(event, e.RunStarted | e.RunResumed):
            if isinstance(event, e.RunStarted):
                _remember(self._run_starts, event.run_id, event.at)
            return logging.INFO, f"{name} {_RUN_WORDS[type(event)]}", {}
        began = self._run_starts.pop(event.run_id, None) if _is_final(event) else None
        duration = None if began is None else max(0.0, event.at - began)
        took = "" if duration is None else f" in {duration:.3f}s"
        level = _RUN_LEVELS.get(type(event), logging.INFO)
        fields: dict[str, Any] = {"duration": duration}
        if isinstance(event, e.RunFailed) and event.errors:
            first = event.errors[0]
            fields |= {"error_type": first.type, "error": first.message}
        return level, f"{name} {_RUN_WORDS.get(type(event), 'changed')}{took}", fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the Flowcraft fields.

    Fields set on the record (by :class:`EventLogger`, or ``run_id``/``node_id``/``attempt``
    by ``NodeLogFilter`` for what a node logs) are written when not None; an exception as
    ``exc_info`` text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _JSON_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def _common(event: e.FlowEvent) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": _EVENT_NAMES.get(type(event), type(event).__name__),
        "run_id": event.run_id or None,
        "blueprint": event.blueprint or None,
        "blueprint_version": event.version or None,
        "trace_id": _trace_id(event.trace),
    }
    if isinstance(event, e.NodeEvent):
        fields |= {"node_id": event.node_id, "frame": event.frame, "attempt": event.attempt}
    return fields


def _node_name(event: e.NodeEvent) -> str:
    where = f"{event.node_id}[{event.frame}]" if event.frame else event.node_id
    return f"node {where}#{event.attempt} of run {event.run_id}"


def _node_outcome(event: e.NodeEvent) -> tuple[int, tuple[str, str], dict[str, Any]]:
    """Level, (what happened, what follows the duration) and the fields of an outcome."""
    if isinstance(event, e.NodeFailed | e.NodeRetrying):
        error = event.error
        fields: dict[str, Any] = {}
        if error is not None:
            fields = {"error_type": error.type, "error": error.message}
        timed_out = error is not None and error.type == "TimeoutError"
        fields["timed_out"] = timed_out or None
        what = "timed out" if timed_out else "failed"
        why = "" if error is None else f" ({error.type}: {error.message})"
        if isinstance(event, e.NodeRetrying):
            return logging.WARNING, (what, f"{why}, retrying"), fields
        return logging.ERROR, (what, why), fields
    word, level = _NODE_WORDS.get(type(event), ("changed", logging.INFO))
    if isinstance(event, e.NodeAwaiting) and event.token:
        return level, (word, f" (token {event.token})"), {"token": event.token}
    return level, (word, ""), {}


def _other(event: e.FlowEvent) -> tuple[int, str, dict[str, Any]]:
    fields: dict[str, Any]
    if isinstance(event, e.MessageDeadLettered):
        fields = {"message_id": event.message_id, "reason": event.reason}
        fields |= {"node_id": event.node_id, "attempt": event.attempt}
        return logging.ERROR, f"message {event.message_id} dead-lettered: {event.reason}", fields
    if isinstance(event, e.LeaseLost):
        fields = {"node_id": event.node_id, "frame": event.frame, "attempt": event.attempt}
        fields |= {"worker": event.worker, "reason": event.reason}
        text = f"lease of node {event.node_id}#{event.attempt} of run {event.run_id} lost"
        return logging.WARNING, f"{text}: {event.reason}", fields
    if isinstance(event, e.RunReconciled):
        fields = {"jobs": event.jobs, "resent": event.resent, "started": event.started}
        text = f"reconciled run {event.run_id}: {event.jobs} jobs re-enqueued, "
        text += f"{event.resent} outbox messages sent again" + (", started" * event.started)
        return logging.INFO, text, fields
    return logging.DEBUG, type(event).__name__, {}


def _trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (``00-<trace id>-<span id>-<flags>``)."""
    parts = traceparent.split("-") if traceparent else []
    return parts[1] if len(parts) == 4 else None  # the format has four fields


def _remember(starts: OrderedDict[Any, float], key: object, at: float) -> None:
    starts[key] = at
    if len(starts) > _REMEMBERED:
        starts.popitem(last=False)


def _is_final(event: e.RunEvent) -> bool:
    return isinstance(event, e.RunCompleted | e.RunFailed | e.RunCancelled | e.RunAwaiting)


_NODE_WORDS: dict[type[e.FlowEvent], tuple[str, int]] = {
    e.NodeSucceeded: ("succeeded", logging.INFO),
    e.NodeResumed: ("resumed", logging.INFO),
    e.NodeAwaiting: ("awaiting resume", logging.INFO),
    e.NodeCancelled: ("cancelled", logging.INFO),
    e.NodeSkipped: ("skipped", logging.DEBUG),
    e.NodeSleeping: ("sleeping", logging.DEBUG),
}
_RUN_WORDS: dict[type[e.FlowEvent], str] = {
    e.RunStarted: "started",
    e.RunResumed: "resumed",
    e.RunCompleted: "completed",
    e.RunFailed: "failed",
    e.RunCancelled: "cancelled",
    e.RunAwaiting: "awaiting resume",
}
_RUN_LEVELS: dict[type[e.FlowEvent], int] = {
    e.RunFailed: logging.ERROR,
    e.RunCancelled: logging.WARNING,
}
_EVENT_NAMES: dict[type[e.FlowEvent], str] = {
    e.RunStarted: "run.started",
    e.RunResumed: "run.resumed",
    e.RunAwaiting: "run.awaiting",
    e.RunCompleted: "run.completed",
    e.RunFailed: "run.failed",
    e.RunCancelled: "run.cancelled",
    e.NodeStarted: "node.started",
    e.NodeSucceeded: "node.succeeded",
    e.NodeFailed: "node.failed",
    e.NodeRetrying: "node.retrying",
    e.NodeSkipped: "node.skipped",
    e.NodeAwaiting: "node.awaiting",
    e.NodeResumed: "node.resumed",
    e.NodeSleeping: "node.sleeping",
    e.NodeCancelled: "node.cancelled",
    e.MessageDeadLettered: "message.dead_lettered",
    e.LeaseLost: "lease.lost",
    e.RunReconciled: "run.reconciled",
}
_JSON_FIELDS = (
    "event",
    "run_id",
    "node_id",
    "frame",
    "attempt",
    "blueprint",
    "blueprint_version",
    "duration",
    "error_type",
    "error",
    "timed_out",
    "token",
    "trace_id",
    "message_id",
    "reason",
    "worker",
    "jobs",
    "resent",
    "started",
)
