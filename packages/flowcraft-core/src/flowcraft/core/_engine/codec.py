"""JSON codecs of the core's data: events, node errors and run state (pure).

Distributed backends store a run's state as a JSON document and carry events in messages;
these functions are the one place that knows the shapes. ``state_from_document`` needs the
run's plan: frame plans are re-derived from the frames' owners (a loop's or map's body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.plan import Plan
from flowcraft.core._engine.state import (
    Arrival,
    ConstructState,
    FrameState,
    NodeError,
    NodeRecord,
    NodeStatus,
    RunState,
    RunStatus,
)

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


# --------------------------------------------------------------------------- state


def state_to_document(state: RunState) -> dict[str, object]:
    """The run state as JSON, without the context (stored per key by the run store)."""
    return {
        "run_id": state.run_id,
        "plan": [state.plan.id, state.plan.version],
        "status": state.status.value,
        "input": state.input,
        "output": state.output,
        "errors": [error_to_dict(e) for e in state.errors],
        "busy": state.busy,
        "awaiting": state.awaiting,
        "settled": state.settled,
        "tokens": {t: list(k) for t, k in state.tokens.items()},
        "nodes": [_record_to_dict(r) for r in state.nodes.values()],
        "frames": [_frame_to_dict(f) for f in state.frames.values()],
        "constructs": [_construct_to_dict(c) for c in state.constructs.values()],
    }


def _record_to_dict(r: NodeRecord) -> dict[str, object]:
    """A node record; fields at their default are left out (documents are saved every step)."""
    out: dict[str, object] = {
        "node_id": r.node_id,
        "frame": r.frame,
        "status": r.status.value,
        "attempt": r.attempt,
    }
    for name, value in (
        ("input", r.input),
        ("output", r.output),
        ("action", r.action),
        ("error", None if r.error is None else error_to_dict(r.error)),
        ("token", r.token),
        ("child_run_id", r.child_run_id),
        ("fallback_for", r.fallback_for),
        ("due_at", r.due_at),
    ):
        if value is not None:
            out[name] = value
    if r.resolved:
        out["resolved"] = True
    if r.resumed:
        out["resumed"] = True
    return out


def _frame_to_dict(f: FrameState) -> dict[str, object]:
    arrivals = {
        target: {str(i): [a.taken, a.source, a.value] for i, a in by_edge.items()}
        for target, by_edge in f.arrivals.items()
    }
    return {
        "frame": f.frame,
        "owner": None if f.owner is None else list(f.owner),
        "input": f.input,
        "index": f.index,
        "arrivals": arrivals,
        "fired": sorted(f.fired),
        "open": f.open,
        "dead": f.dead,
    }


def _construct_to_dict(c: ConstructState) -> dict[str, object]:
    return {
        "key": list(c.key),
        "attempt": c.attempt,
        "items": c.items,
        "next_index": c.next_index,
        "active": sorted(c.active),
        "results": {str(i): v for i, v in c.results.items()},
        "value": c.value,
        "frames": c.frames,
        "done": c.done,
    }


def state_from_document(
    document: Mapping[str, Any], plan: Plan, context: Mapping[str, object]
) -> RunState:
    """Rebuild the run state from its document, its plan and its context."""
    try:
        state = RunState(
            run_id=document["run_id"],
            plan=plan,
            status=RunStatus(document["status"]),
            input=document["input"],
            context=dict(context),
            output=document["output"],
            errors=[error_from_dict(e) for e in document["errors"]],
            busy=document["busy"],
            awaiting=document["awaiting"],
            settled=document.get("settled", False),
            tokens={t: (k[0], k[1]) for t, k in document["tokens"].items()},
        )
        for raw in document["nodes"]:
            record = _record_from_dict(raw)
            state.nodes[record.key] = record
        frames = sorted(document["frames"], key=lambda f: f["frame"].count("/") + bool(f["frame"]))
        for raw in frames:
            _restore_frame(state, raw)
        for raw in document["constructs"]:
            construct = _construct_from_dict(raw)
            state.constructs[construct.key] = construct
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"not a run state document: {exc!r}") from None
    return state


def _record_from_dict(r: Mapping[str, Any]) -> NodeRecord:
    error = r.get("error")
    return NodeRecord(
        node_id=r["node_id"],
        frame=r["frame"],
        status=NodeStatus(r["status"]),
        attempt=r["attempt"],
        input=r.get("input"),
        output=r.get("output"),
        action=r.get("action"),
        error=None if error is None else error_from_dict(error),
        token=r.get("token"),
        child_run_id=r.get("child_run_id"),
        fallback_for=r.get("fallback_for"),
        resolved=bool(r.get("resolved", False)),
        resumed=bool(r.get("resumed", False)),
        due_at=r.get("due_at"),
    )


def _restore_frame(state: RunState, raw: Mapping[str, Any]) -> None:
    owner = None if raw["owner"] is None else (raw["owner"][0], raw["owner"][1])
    plan = state.plan if owner is None else _body_plan(state, owner)
    state.frames[raw["frame"]] = FrameState(
        frame=raw["frame"],
        plan=plan,
        owner=owner,
        input=raw["input"],
        index=raw["index"],
        arrivals={
            target: {int(i): Arrival(taken=a[0], source=a[1], value=a[2]) for i, a in by.items()}
            for target, by in raw["arrivals"].items()
        },
        fired=set(raw["fired"]),
        open=raw["open"],
        dead=raw["dead"],
    )


def _body_plan(state: RunState, owner: tuple[str, str]) -> Plan:
    node = state.frames[owner[1]].plan.nodes[owner[0]]
    spec = node.loop or node.map
    if spec is None:
        raise CodecError(f"frame owner {owner} is not a loop or map node")
    return spec.body


def _construct_from_dict(c: Mapping[str, Any]) -> ConstructState:
    return ConstructState(
        key=(c["key"][0], c["key"][1]),
        attempt=c["attempt"],
        items=list(c["items"]),
        next_index=c["next_index"],
        active=set(c["active"]),
        results={int(i): v for i, v in c["results"].items()},
        value=c["value"],
        frames=list(c["frames"]),
        done=c["done"],
    )
