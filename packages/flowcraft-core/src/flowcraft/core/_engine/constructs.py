"""Structured constructs in the decision core: map, loop and subflow (pure).

A map or loop node instance owns body frames (``M[i]``, ``L#i``). The body's frame result feeds
the construct; a body failure that nothing inside absorbs fails the construct's current attempt,
so the construct's own retry and fallback apply to it as a whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcraft.core._engine.events import ChildOutcome, ChildRunChanged
from flowcraft.core._engine.frames import loop_frame, map_frame
from flowcraft.core._engine.plan import NodeKind, PlanNode
from flowcraft.core._engine.scope import OutputsView, evaluate
from flowcraft.core._engine.state import (
    ConstructState,
    FrameState,
    NodeError,
    NodeRecord,
    NodeStatus,
    set_node_status,
)

if TYPE_CHECKING:
    from flowcraft.core._engine.decide import Machine


def _touch(machine: Machine, cs: ConstructState) -> None:
    """Note that the construct's own record (progress, value, done) changed."""
    machine.state.touch("c", cs.key[1], cs.key[0])


def _error(record: NodeRecord, kind: str, message: str) -> NodeError:
    return NodeError(
        node_id=record.node_id,
        frame=record.frame,
        attempt=record.attempt,
        type=kind,
        message=message,
    )


def start(machine: Machine, record: NodeRecord, node: PlanNode) -> None:
    """Start an attempt of a map or loop node."""
    construct = ConstructState(key=record.key, attempt=record.attempt, value=record.input)
    machine.state.constructs[record.key] = construct
    _touch(machine, construct)
    if node.kind is NodeKind.MAP:
        _start_map(machine, record, node, construct)
    else:
        _loop_next(machine, record, node, construct)


# ---------------------------------------------------------------------- map


def _start_map(machine: Machine, record: NodeRecord, node: PlanNode, cs: ConstructState) -> None:
    assert node.map is not None
    items: object = record.input
    if node.map.items is not None:
        try:
            items = evaluate(node.map.items, _scope(machine, record, node, record.input))
        except Exception as exc:  # surfaced as the map's failure, never swallowed
            fail = _error(record, "ExpressionError", f"map {node.id} items: {exc}")
            machine.attempt_failed(record, fail, retryable=False)
            return
    if not isinstance(items, list | tuple):
        message = f"map {node.id} needs a list of items, got {type(items).__name__}"
        machine.attempt_failed(record, _error(record, "TypeError", message), retryable=False)
        return
    cs.items = list(items)
    machine.state.touch("ci", cs.key[1], cs.key[0], cs.attempt)
    if not cs.items:
        cs.done = True
        _touch(machine, cs)
        machine.succeed(record, [], None)
        return
    _fill_map(machine, record, node, cs)


def _fill_map(machine: Machine, record: NodeRecord, node: PlanNode, cs: ConstructState) -> None:
    assert node.map is not None
    while len(cs.active) < node.map.concurrency and cs.next_index < len(cs.items):
        index = cs.next_index
        cs.next_index += 1
        cs.active.add(index)
        _touch(machine, cs)
        frame = map_frame(record.frame, node.id, cs.attempt, index)
        cs.frames.append(frame)
        machine.open_frame(
            frame, node.map.body, owner=record.key, input=cs.items[index], index=index
        )
        if cs.done or record.status is not NodeStatus.RUNNING:
            return


def _map_item_done(
    machine: Machine,
    record: NodeRecord,
    node: PlanNode,
    cs: ConstructState,
    *,
    frame: FrameState,
    result: object,
) -> None:
    cs.results[frame.index] = result
    cs.active.discard(frame.index)
    machine.state.touch("cr", cs.key[1], cs.key[0], cs.attempt, frame.index)
    _touch(machine, cs)
    if len(cs.results) == len(cs.items):
        cs.done = True
        _touch(machine, cs)
        machine.succeed(record, [cs.results[i] for i in range(len(cs.items))], None)
        return
    _fill_map(machine, record, node, cs)


# ---------------------------------------------------------------------- loop


def _loop_next(machine: Machine, record: NodeRecord, node: PlanNode, cs: ConstructState) -> None:
    assert node.loop is not None
    spec = node.loop
    iteration = cs.next_index
    if spec.condition is None:
        holds = iteration < spec.max_iterations
    else:
        scope = {**_scope(machine, record, node, cs.value), "iteration": iteration}
        try:
            value = evaluate(spec.condition, scope)
        except Exception as exc:  # surfaced as the loop's failure, never swallowed
            fail = _error(record, "ExpressionError", f"loop {node.id} condition: {exc}")
            machine.attempt_failed(record, fail, retryable=False)
            return
        if not isinstance(value, bool):
            fail = _error(
                record, "TypeError", f"loop {node.id} condition gave {value!r}, not a bool"
            )
            machine.attempt_failed(record, fail, retryable=False)
            return
        holds = value
    if not holds:
        cs.done = True
        _touch(machine, cs)
        machine.succeed(record, cs.value, None)
    elif iteration >= spec.max_iterations:
        message = (
            f"loop {node.id} reached max_iterations={spec.max_iterations} "
            "while its condition still held"
        )
        machine.attempt_failed(
            record, _error(record, "LoopLimitExceeded", message), retryable=False
        )
    else:
        cs.next_index += 1
        _touch(machine, cs)
        frame = loop_frame(record.frame, node.id, cs.attempt, iteration)
        cs.frames.append(frame)
        machine.open_frame(frame, spec.body, owner=record.key, input=cs.value, index=iteration)


# ---------------------------------------------------------------------- bodies


def body_done(machine: Machine, frame: FrameState, result: object) -> None:
    """A body frame resolved every node: feed its result to the owning construct."""
    assert frame.owner is not None
    record = machine.state.nodes[frame.owner]
    cs = machine.state.constructs.get(frame.owner)
    if cs is None or cs.done or record.status is not NodeStatus.RUNNING:
        return
    if frame.frame not in cs.frames:
        return  # a frame of an earlier attempt
    node = machine.node_of(record)
    if node.kind is NodeKind.MAP:
        _map_item_done(machine, record, node, cs, frame=frame, result=result)
    else:
        cs.value = result
        _touch(machine, cs)
        _loop_next(machine, record, node, cs)


def body_failed(machine: Machine, frame: FrameState, error: NodeError) -> None:
    """A failure escaped a body frame: abandon the attempt's frames and fail the attempt."""
    assert frame.owner is not None
    record = machine.state.nodes[frame.owner]
    cs = machine.state.constructs.get(frame.owner)
    if cs is None or cs.done or record.status is not NodeStatus.RUNNING:
        return
    cs.done = True
    _touch(machine, cs)
    machine.abandon_frames(cs.frames)
    machine.attempt_failed(record, error, retryable=True)


def _scope(
    machine: Machine, record: NodeRecord, node: PlanNode, input: object
) -> dict[str, object]:
    frame = machine.state.frames[record.frame]
    return {
        "input": input,
        "context": machine.state.context,
        "outputs": OutputsView(machine.state, frame),
        "params": dict(node.params),
    }


# ---------------------------------------------------------------------- subflow


def child_changed(machine: Machine, record: NodeRecord, event: ChildRunChanged) -> None:
    """The child run of a subflow instance moved: follow it."""
    node = machine.node_of(record)
    outcome = event.outcome
    if outcome is ChildOutcome.COMPLETED:
        machine.succeed(record, _child_output(node, event), None)
    elif outcome in (ChildOutcome.FAILED, ChildOutcome.CANCELLED):
        error = event.error or _error(record, "ChildRunCancelled", f"child run of {node.id} ended")
        machine.attempt_failed(record, error, retryable=outcome is ChildOutcome.FAILED)
    elif outcome is ChildOutcome.AWAITING and record.status is NodeStatus.RUNNING:
        set_node_status(machine.state, record, NodeStatus.AWAITING)
        machine.notify(record)
    elif outcome is ChildOutcome.RUNNING and record.status is NodeStatus.AWAITING:
        set_node_status(machine.state, record, NodeStatus.RUNNING)
        machine.notify(record)


def _child_output(node: PlanNode, event: ChildRunChanged) -> object:
    assert node.subflow is not None
    mapping = node.subflow.output
    if mapping is None:
        return event.output
    if isinstance(mapping, str):
        return event.outputs.get(mapping)
    return {name: event.outputs.get(ref) for name, ref in mapping.items()}
