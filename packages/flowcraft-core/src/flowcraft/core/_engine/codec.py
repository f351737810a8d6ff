"""JSON codecs of the core's data: events and node errors (pure).

Distributed backends carry events in messages and store attempt outcomes as events; these
functions are the one place that knows the shapes. A run's state is stored as records
(``records.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.state import NodeError

#: How a deletion travels in JSON (context writes).
DELETE_MARKER: Mapping[str, bool] = {"$flowcraft_delete": True}
_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ev.RunStarted,
        ev.NodeSucceeded,
        ev.NodeFailed,
        ev.NodeSuspended,
        ev.NodeResumed,
        ev.TimerFired,
        ev.ChildRunChanged,
        ev.CancelRequested,
    )
}


class CodecError(ValueError):
    """A document or message does not have the expected shape."""


def error_to_dict(error: NodeError) -> dict[str, object]:
    """A node error as JSON."""
    return error.as_dict()


def error_from_dict(data: Mapping[str, Any]) -> NodeError:
    """A node error from JSON."""
    return NodeError(
        node_id=str(data["node_id"]),
        frame=str(data["frame"]),
        attempt=int(data["attempt"]),
        type=str(data["type"]),
        message=str(data["message"]),
        traceback=data.get("traceback"),
    )


def encode_writes(writes: Mapping[str, object]) -> dict[str, object]:
    """Context writes as JSON (deletions become the marker)."""
    return {k: DELETE_MARKER if v is ev.DELETED else v for k, v in writes.items()}


def decode_writes(writes: Mapping[str, object]) -> dict[str, object]:
    """Context writes from JSON."""
    return {k: ev.DELETED if v == DELETE_MARKER else v for k, v in writes.items()}


def event_to_dict(event: ev.Event) -> dict[str, object]:
    """An event as JSON: its fields plus ``type``."""
    data: dict[str, object] = {"type": type(event).__name__}
    for name in event.__dataclass_fields__:
        value = getattr(event, name)
        if isinstance(value, NodeError):
            value = error_to_dict(value)
        elif name == "context_writes":
            value = encode_writes(value)
        elif name in ("purpose", "outcome"):
            value = str(value)
        data[name] = value
    return data


def event_from_dict(data: Mapping[str, Any]) -> ev.Event:
    """An event from JSON. Raises :class:`CodecError` for unknown or malformed events."""
    try:
        cls = _EVENT_TYPES[data["type"]]
        fields = {k: v for k, v in data.items() if k != "type"}
        if isinstance(fields.get("error"), Mapping):
            fields["error"] = error_from_dict(fields["error"])
        if "context_writes" in fields:
            fields["context_writes"] = decode_writes(fields["context_writes"])
        if "purpose" in fields:
            fields["purpose"] = ev.TimerPurpose(fields["purpose"])
        if "outcome" in fields:
            fields["outcome"] = ev.ChildOutcome(fields["outcome"])
        event: ev.Event = cls(**fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"not an event: {exc}") from None
    return event
