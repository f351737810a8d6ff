"""What expressions and ``inputs`` references see: outputs of a frame, the context, the input."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flowcraft.core._engine.plan import Expression, InputSpec
from flowcraft.core._engine.state import FrameState, NodeRecord, NodeStatus, RunState

_CONTEXT_PREFIX = "context."


def has_output(record: NodeRecord | None) -> bool:
    """Whether the instance produced an output that stands (succeeded, or stood in for)."""
    if record is None:
        return False
    return record.status is NodeStatus.SUCCEEDED or (
        record.status is NodeStatus.FAILED and record.resolved
    )


class OutputsView(Mapping[str, object]):
    """Outputs visible from a frame: its own nodes, then each enclosing frame's, innermost first."""

    __slots__ = ("_frames", "_state")

    def __init__(self, state: RunState, frame: FrameState) -> None:
        self._state = state
        chain = [frame]
        while chain[-1].owner is not None:
            chain.append(state.frames[chain[-1].owner[1]])
        self._frames = chain

    def __getitem__(self, node_id: str) -> object:
        for frame in self._frames:
            if node_id in frame.plan.nodes:
                record = self._state.nodes.get((node_id, frame.frame))
                if has_output(record):
                    assert record is not None
                    return record.output
        raise KeyError(node_id)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for frame in self._frames:
            for node_id in frame.plan.nodes:
                if node_id not in seen and has_output(
                    self._state.nodes.get((node_id, frame.frame))
                ):
                    seen.add(node_id)
                    yield node_id

    def __len__(self) -> int:
        return sum(1 for _ in self)


def evaluate(expression: Expression, scope: Mapping[str, object]) -> object:
    """Evaluate, materialising lazy views only when the expression mentions them."""
    concrete = {
        name: dict(value) if isinstance(value, OutputsView) else value
        for name, value in scope.items()
        if not isinstance(value, OutputsView) or name in expression.source
    }
    return expression.evaluate(concrete)


def resolve_reference(state: RunState, frame: FrameState, ref: str) -> object:
    """An ``inputs`` reference: a node id (its output), ``context.KEY`` or a context key."""
    outputs = OutputsView(state, frame)
    if ref in outputs:
        return outputs[ref]
    key = ref.removeprefix(_CONTEXT_PREFIX)
    return state.context.get(key)


def resolve_inputs(state: RunState, frame: FrameState, spec: InputSpec) -> object:
    """Resolve an ``inputs`` spec (string or mapping of name -> reference)."""
    if isinstance(spec, str):
        return resolve_reference(state, frame, spec)
    assert spec is not None
    return {name: resolve_reference(state, frame, ref) for name, ref in spec.items()}
