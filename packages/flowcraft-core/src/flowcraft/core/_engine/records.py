"""A run's state as a small header plus records keyed within the run (pure).

Distributed stores keep a run as its **header** (status, counters, errors: rewritten by every
save, under the compare-and-set) and **records**, each a JSON value under a key, written only
when a decision changed it (``RunState.changes`` lists the keys the engine touched). A save
therefore costs what the decision changed, not what the run holds.

The records (key -> value; keys are the JSON text of a list, kind first):

=========================  ===============================================================
``["i"]``                  the run's input
``["r"]``                  the run's output
``["n", frame, node]``     a node instance (status, attempt, input, output, error, ...;
                           ``fired``: its turn came in ``frame``)
``["f", frame]``           a frame's owner, input and index (written once)
``["o", frame]``           a frame's ``[open, dead]`` (the root frame's are in the header)
``["x", frame, node]``     ``node`` has fired in ``frame`` without an instance (a halted
                           frame); a fired node with an instance says so in its record
``["a", frame, t, i]``     what reached node ``t`` along its incoming edge ``i``:
                           ``[taken, source, value]``
``["c", frame, node]``     a loop's or map's progress: attempt, next index, value, done
``["ci", frame, node, k]`` the items of attempt ``k`` of a map (written once)
``["cr", frame, node, k, i]``  the result of item ``i`` of attempt ``k`` of a map
=========================  ===============================================================

Everything else is derived when records are read: hook tokens (from the node records), a
construct's frames and a map's active items (from its progress and results). What changes
with every step of a small run lives in the header (the root frame's counters) or in the
record that changes anyway (a node fires when its instance is created), so a step of a chain
writes the header and the two node records it moved. Records are only
ever added or overwritten, never deleted; records of an earlier attempt of a construct stay
and are ignored. One decision writes a record per node it starts and per arrival, fired node
and frame it touches: a 10,000-wide fan-out is about 20,000 small records, which is why a
store with bounded transactions writes a save's records as few packed items (see
``ports.RunStore.save_state``).

:func:`patch_state` applies records to a state held in memory: the records other processes
saved since that state's version, and the stored values of the keys this process changed but
could not save (a lost compare-and-set), so a conflict costs the delta, not a reload.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from flowcraft.core._engine.codec import CodecError, error_from_dict, error_to_dict
from flowcraft.core._engine.frames import ROOT, loop_frame, map_frame
from flowcraft.core._engine.plan import NodeKind, Plan
from flowcraft.core._engine.state import (
    Arrival,
    ConstructState,
    FrameState,
    NodeRecord,
    NodeStatus,
    RecordKey,
    RunState,
    RunStatus,
)

__all__ = [
    "all_records",
    "changed_keys",
    "changed_records",
    "decode_key",
    "encode_key",
    "header_of",
    "patch_state",
    "records_from_document",
    "result_keys",
    "state_from_records",
]

#: The order records are applied in: frames (outermost first) before what lives in them.
_ORDER = {"f": 0, "o": 1, "x": 2, "a": 3, "n": 4, "c": 5, "ci": 6, "cr": 7, "i": 8, "r": 9}


@functools.lru_cache(maxsize=8192)
def encode_key(key: RecordKey) -> str:
    """A record key as stored (compact JSON text of the list).

    Cached: every save names the same few dozen keys of a blueprint again (no run id in them).
    """
    return json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)


def decode_key(text: str) -> RecordKey:
    """A record key from its stored text (``CodecError`` if it is not one)."""
    try:
        key = json.loads(text)
    except ValueError:
        key = None
    if not isinstance(key, list) or not key or key[0] not in _ORDER:
        raise CodecError(f"not a record key: {text!r}")
    return tuple(key)


# --------------------------------------------------------------------------- writing


def header_of(state: RunState) -> dict[str, object]:
    """The run header: what every save rewrites (small, whatever the run's size)."""
    root = state.frames.get(ROOT)
    header: dict[str, object] = {
        "status": state.status.value,
        "busy": state.busy,
        "awaiting": state.awaiting,
        "settled": state.settled,
        "errors": [error_to_dict(e) for e in state.errors],
        "root": None if root is None else [root.open, root.dead],
    }
    if state.trace is not None:  # a traced run only (flowcraft.core.otel)
        header["trace"] = state.trace
    return header


def changed_records(state: RunState) -> dict[str, object]:
    """The records the state changed since ``state.changes`` was last cleared, by stored key."""
    if not state.changes:
        return {}
    return _encode(state, state.changes)


def all_records(state: RunState) -> dict[str, object]:
    """Every record of the state (a new run's, or to check a round trip)."""
    return _encode(state, _keys(state))


def changed_keys(state: RunState) -> list[str]:
    """The stored keys the state's unsaved changes touch (to ask back after a refused save).

    Both forms of a fired node are asked for: its ``x`` record and its instance's record.
    """
    keys: set[str] = set()
    for key in state.changes or ():
        keys.add(encode_key(key))
        if key[0] == "x":
            keys.add(encode_key(("n", key[1], key[2])))
    return sorted(keys)


def result_keys(plan: Plan) -> list[str]:
    """The stored keys a run's final result is made of, besides its header and context.

    The root frame, the run's output and the instance of each top-level node (those that did
    not run have no record): a state rebuilt from only these (``state_from_records``) gives
    the same ``result_of`` as the whole state once the run is settled.
    """
    keys = [encode_key(("f", ROOT)), encode_key(("r",))]
    keys.extend(encode_key(("n", ROOT, node_id)) for node_id in plan.nodes)
    return keys


def result_records(state: RunState) -> dict[str, object]:
    """The records of ``result_keys`` that ``state`` has, in their stored form."""
    keys: list[RecordKey] = [("f", ROOT)] if ROOT in state.frames else []
    if state.output is not None:
        keys.append(("r",))
    keys.extend(("n", frame, node_id) for node_id, frame in state.nodes if frame == ROOT)
    return _encode(state, keys)


def _encode(state: RunState, keys: Iterable[RecordKey]) -> dict[str, object]:
    """The stored form of ``keys``.

    What the header holds is left out; a fired node with an instance is said in the record of
    its instance.
    """
    out: dict[str, object] = {}
    for key in keys:
        kind, stored = key[0], key
        if kind == "o" and key[1] == ROOT:
            continue
        if kind == "x" and (str(key[2]), str(key[1])) in state.nodes:
            stored = ("n", key[1], key[2])
        out[encode_key(stored)] = _value(state, stored)
    return out


def _keys(state: RunState) -> Iterator[RecordKey]:
    if state.input is not None:
        yield ("i",)
    if state.output is not None:
        yield ("r",)
    for node_id, frame in state.nodes:
        yield ("n", frame, node_id)
    for name, f in state.frames.items():
        yield ("f", name)
        yield ("o", name)
        for node_id in f.fired:
            yield ("x", name, node_id)
        for target, by_edge in f.arrivals.items():
            for index in by_edge:
                yield ("a", name, target, index)
    for (node_id, frame), cs in state.constructs.items():
        yield ("c", frame, node_id)
        if cs.items:
            yield ("ci", frame, node_id, cs.attempt)
        for index in cs.results:
            yield ("cr", frame, node_id, cs.attempt, index)


def _value(state: RunState, key: RecordKey) -> object:
    try:
        kind = key[0]
        if kind == "i":
            return state.input
        if kind == "r":
            return state.output
        if kind == "n":
            frame = state.frames.get(str(key[1]))
            fired = frame is not None and str(key[2]) in frame.fired
            return _node_value(state.nodes[str(key[2]), str(key[1])], fired=fired)
        if kind in ("f", "o", "x", "a"):
            return _frame_value(state.frames[str(key[1])], key)
        return _construct_value(state.constructs[str(key[2]), str(key[1])], key)
    except (KeyError, IndexError):
        raise CodecError(f"record {key!r} names nothing in run {state.run_id}") from None


def _node_value(r: NodeRecord, *, fired: bool) -> dict[str, object]:
    """A node record; fields at their default are left out."""
    out: dict[str, object] = {"status": r.status.value, "attempt": r.attempt}
    for name, value in (
        ("input", r.input),
        ("output", r.output),
        ("action", r.action),
        ("error", None if r.error is None else error_to_dict(r.error)),
        ("token", r.token),
        ("child_run_id", r.child_run_id),
        ("fallback_for", r.fallback_for),
        ("due_at", r.due_at),
        ("started_at", r.started_at),
        ("finished_at", r.finished_at),
    ):
        if value is not None:
            out[name] = value
    if r.resolved:
        out["resolved"] = True
    if r.resumed:
        out["resumed"] = True
    if fired:
        out["fired"] = True
    return out


def _frame_value(f: FrameState, key: RecordKey) -> object:
    kind = key[0]
    if kind == "f":
        owner = None if f.owner is None else list(f.owner)
        return {"owner": owner, "input": f.input, "index": f.index}
    if kind == "o":
        return [f.open, f.dead]
    if kind == "x":
        if key[2] not in f.fired:
            raise KeyError(key)
        return 1
    arrival = f.arrivals[str(key[2])][int(key[3])]
    return [arrival.taken, arrival.source, arrival.value]


def _construct_value(cs: ConstructState, key: RecordKey) -> object:
    kind = key[0]
    if kind == "c":
        return {
            "attempt": cs.attempt,
            "next_index": cs.next_index,
            "value": cs.value,
            "done": cs.done,
        }
    if kind == "ci":
        return cs.items
    return cs.results[int(key[4])]


# --------------------------------------------------------------------------- reading


def state_from_records(
    run_id: str,
    plan: Plan,
    header: Mapping[str, Any],
    records: Mapping[str, object],
    context: Mapping[str, object],
) -> RunState:
    """Rebuild a run's state from its header, every record, its plan and its context."""
    state = RunState(run_id=run_id, plan=plan, context=dict(context))
    patch_state(state, header, records)
    return state


def patch_state(
    state: RunState,
    header: Mapping[str, Any],
    records: Mapping[str, object],
    missing: Collection[str] = (),
) -> None:
    """Bring ``state`` to what the store holds.

    ``header`` is the stored header; ``records`` the records written since the state's version
    and the stored values of keys this state changed without saving them; ``missing`` are
    keys this state changed that the store does not have (what an unsaved decision created):
    they are taken out again. Neither ``state.changes`` nor the context is touched.
    """
    try:
        _apply_header(state, header)
        for key in sorted((decode_key(k) for k in missing), key=_removal_order):
            _remove(state, key)
        decoded = sorted(((decode_key(k), v) for k, v in records.items()), key=_apply_order)
        constructs: set[tuple[str, str]] = set()
        for key, value in decoded:
            _put(state, key, value)
            if key[0] in ("c", "ci", "cr"):
                constructs.add((str(key[2]), str(key[1])))
        for construct in constructs:
            _derive_construct(state, construct)
        root, counters = state.frames.get(ROOT), header.get("root")
        if root is not None and counters is not None:
            root.open, root.dead = int(counters[0]), bool(counters[1])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"run {state.run_id}: not a stored state: {exc!r}") from None


def _apply_order(item: tuple[RecordKey, object]) -> tuple[int, int]:
    key = item[0]
    depth = _depth(str(key[1])) if len(key) > 1 else 0
    return (_ORDER[str(key[0])], depth)


def _removal_order(key: RecordKey) -> tuple[int, int]:
    order, depth = _apply_order((key, None))
    return (-order, -depth)


def _depth(frame: str) -> int:
    return frame.count("/") + bool(frame)


def _apply_header(state: RunState, header: Mapping[str, Any]) -> None:
    state.status = RunStatus(header["status"])
    state.busy = int(header["busy"])
    state.awaiting = int(header["awaiting"])
    state.settled = bool(header["settled"])
    state.errors = [error_from_dict(e) for e in header["errors"]]
    trace = header.get("trace")
    state.trace = trace if isinstance(trace, str) else None


def _put(state: RunState, key: RecordKey, stored: object) -> None:
    kind = key[0]
    value: Any = stored
    if kind == "i":
        state.input = value
    elif kind == "r":
        state.output = value
    elif kind == "n":
        _put_node(state, str(key[1]), str(key[2]), value)
    elif kind == "f":
        _put_frame(state, str(key[1]), value)
    elif kind == "o":
        frame = state.frames[str(key[1])]
        frame.open, frame.dead = int(value[0]), bool(value[1])
    elif kind == "x":
        state.frames[str(key[1])].fired.add(str(key[2]))
    elif kind == "a":
        arrivals = state.frames[str(key[1])].arrivals.setdefault(str(key[2]), {})
        arrivals[int(key[3])] = Arrival(taken=bool(value[0]), source=value[1], value=value[2])
    elif kind == "c":
        _put_construct(state, (str(key[2]), str(key[1])), value)
    else:
        cs = state.constructs.get((str(key[2]), str(key[1])))
        if cs is None or cs.attempt != key[3]:
            return  # a record of an earlier attempt of the construct
        if kind == "ci":
            cs.items = list(value)
        else:
            cs.results[int(key[4])] = value


def _put_node(state: RunState, frame: str, node_id: str, r: Mapping[str, Any]) -> None:
    error = r.get("error")
    record = NodeRecord(
        node_id=node_id,
        frame=frame,
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
        started_at=r.get("started_at"),
        finished_at=r.get("finished_at"),
    )
    state.nodes[record.key] = record
    if record.token is not None:
        state.tokens[record.token] = record.key
    if r.get("fired"):
        state.frames[frame].fired.add(node_id)


def _put_frame(state: RunState, name: str, value: Mapping[str, Any]) -> None:
    raw_owner = value["owner"]
    owner = None if raw_owner is None else (str(raw_owner[0]), str(raw_owner[1]))
    existing = state.frames.get(name)
    if existing is not None:  # written once: nothing of it changes
        return
    plan = state.plan if owner is None else _body_plan(state, owner)
    state.frames[name] = FrameState(
        frame=name, plan=plan, owner=owner, input=value["input"], index=int(value["index"])
    )


def _body_plan(state: RunState, owner: tuple[str, str]) -> Plan:
    node = state.frames[owner[1]].plan.nodes[owner[0]]
    spec = node.loop or node.map
    if spec is None:
        raise CodecError(f"frame owner {owner} is not a loop or map node")
    return spec.body


def _put_construct(state: RunState, key: tuple[str, str], value: Mapping[str, Any]) -> None:
    attempt = int(value["attempt"])
    cs = state.constructs.get(key)
    if cs is None or cs.attempt != attempt:
        cs = state.constructs[key] = ConstructState(key=key, attempt=attempt)
    cs.next_index = int(value["next_index"])
    cs.value = value["value"]
    cs.done = bool(value["done"])


def _derive_construct(state: RunState, key: tuple[str, str]) -> None:
    """A construct's frames and (for a map) active items, from its progress and results."""
    cs = state.constructs.get(key)
    if cs is None:
        return
    node_id, parent = key
    node = state.frames[parent].plan.nodes[node_id]
    if node.kind is NodeKind.MAP:
        cs.frames = [map_frame(parent, node_id, cs.attempt, i) for i in range(cs.next_index)]
        cs.active = set(range(cs.next_index)) - cs.results.keys()
    else:
        cs.frames = [loop_frame(parent, node_id, cs.attempt, i) for i in range(cs.next_index)]
        cs.active = set()


def _remove(state: RunState, key: RecordKey) -> None:  # noqa: PLR0912 - one branch per kind
    """Take out what an unsaved decision created (the store never had ``key``)."""
    kind = key[0]
    if kind == "o":
        return  # taken out with its frame, or the frame stays (then so does this record)
    if kind == "i":
        state.input = None
    elif kind == "r":
        state.output = None
    elif kind == "n":
        record = state.nodes.pop((str(key[2]), str(key[1])), None)
        if record is not None and record.token is not None:
            state.tokens.pop(record.token, None)
    elif kind == "f":
        state.frames.pop(str(key[1]), None)
    elif kind in ("x", "a"):
        frame = state.frames.get(str(key[1]))
        if frame is None:
            return
        if kind == "x":
            frame.fired.discard(str(key[2]))
            return
        arrivals = frame.arrivals.get(str(key[2]), {})
        arrivals.pop(int(key[3]), None)
        if not arrivals:
            frame.arrivals.pop(str(key[2]), None)
    elif kind == "c":
        state.constructs.pop((str(key[2]), str(key[1])), None)
    else:
        cs = state.constructs.get((str(key[2]), str(key[1])))
        if cs is not None and cs.attempt == key[3]:
            if kind == "ci":
                cs.items = []
            else:
                cs.results.pop(int(key[4]), None)


# --------------------------------------------------------------------------- earlier layout


def records_from_document(
    document: Mapping[str, Any],
) -> tuple[dict[str, object], dict[str, object]]:
    """The header and records of a state stored whole by earlier builds (one JSON document).

    A pure reshaping of that document (nodes, frames with their arrivals and fired nodes,
    constructs); ``CodecError`` if it is not one.
    """
    try:
        header: dict[str, object] = {
            "status": str(RunStatus(document["status"])),
            "busy": int(document["busy"]),
            "awaiting": int(document["awaiting"]),
            "settled": bool(document.get("settled", False)),
            "errors": list(document["errors"]),
        }
        records: dict[str, object] = {}
        if document.get("input") is not None:
            records[encode_key(("i",))] = document["input"]
        if document.get("output") is not None:
            records[encode_key(("r",))] = document["output"]
        for raw in document["nodes"]:
            node = {k: v for k, v in raw.items() if k not in ("node_id", "frame")}
            records[encode_key(("n", raw["frame"], raw["node_id"]))] = node
        for raw in document["frames"]:
            records.update(_legacy_frame(raw))
        for raw in document["constructs"]:
            records.update(_legacy_construct(raw))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodecError(f"not a run state document: {exc!r}") from None
    return header, records


def _legacy_frame(raw: Mapping[str, Any]) -> dict[str, object]:
    name = raw["frame"]
    out: dict[str, object] = {
        encode_key(("f", name)): {
            "owner": raw["owner"],
            "input": raw["input"],
            "index": raw["index"],
        },
        encode_key(("o", name)): [raw["open"], raw["dead"]],
    }
    for node_id in raw["fired"]:
        out[encode_key(("x", name, node_id))] = 1
    for target, by_edge in raw["arrivals"].items():
        for index, arrival in by_edge.items():
            out[encode_key(("a", name, target, int(index)))] = list(arrival)
    return out


def _legacy_construct(raw: Mapping[str, Any]) -> dict[str, object]:
    node_id, frame = raw["key"]
    attempt = int(raw["attempt"])
    out: dict[str, object] = {
        encode_key(("c", frame, node_id)): {
            "attempt": attempt,
            "next_index": raw["next_index"],
            "value": raw["value"],
            "done": raw["done"],
        }
    }
    if raw["items"]:
        out[encode_key(("ci", frame, node_id, attempt))] = list(raw["items"])
    for index, result in raw["results"].items():
        out[encode_key(("cr", frame, node_id, attempt, int(index)))] = result
    return out
