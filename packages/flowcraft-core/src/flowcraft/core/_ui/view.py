"""What the web view shows of a run, built from its record, state and blueprint (pure).

No I/O and no clock: the caller reads the record, the state and the blueprint through the
``Client`` and passes ``now``. Everything here is data for :mod:`.pages` to escape and draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowcraft.core._analysis.mermaid import STATE_STYLES, to_mermaid
from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.state import NodeRecord, NodeStatus, RunState, RunStatus
from flowcraft.core._model.graph import Blueprint
from flowcraft.core.ports import RunRecord

#: Node statuses the diagram has no colour of its own for, and the colour they borrow.
_DIAGRAM_ALIASES: Mapping[str, str] = {NodeStatus.SLEEPING.value: NodeStatus.AWAITING.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    """One node instance of a run as the page lists it."""

    node_id: str
    frame: str
    status: str
    attempt: int
    input: object
    output: object
    action: str | None
    error: Mapping[str, object] | None
    due_at: float | None
    child_run_id: str | None
    started_at: float | None = None
    finished_at: float | None = None
    actions: tuple[str, ...] = ()
    """For an awaiting node: the actions its outgoing edges declare (what a resume may pick)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunView:
    """A run's page: its record, its node instances and its diagram (None: no blueprint here)."""

    record: RunRecord
    nodes: tuple[NodeView, ...]
    mermaid: str | None
    now: float

    @property
    def live(self) -> bool:
        """Whether the run may still change (the page keeps refreshing while it is)."""
        return not terminal(self.record.status)

    @property
    def elapsed(self) -> float:
        """Seconds from creation to the last save (terminal) or to now (live)."""
        end = self.now if self.live else self.record.updated_at
        return max(0.0, end - self.record.created_at)


def terminal(status: str) -> bool:
    """Whether a run status (a store's string) is terminal; unknown strings are not."""
    try:
        return RunStatus(status).terminal
    except ValueError:
        return False


def run_view(
    record: RunRecord, state: RunState | None, blueprint: Blueprint | None, *, now: float
) -> RunView:
    """The page's data; ``state`` and ``blueprint`` are None when the run's blueprint is unknown."""
    if state is None or blueprint is None:
        return RunView(record=record, nodes=(), mermaid=None, now=now)
    nodes = tuple(_node_view(r, blueprint) for r in _ordered(state, blueprint))
    chart = to_mermaid(blueprint, diagram_states(state, blueprint), direction="LR")
    return RunView(record=record, nodes=nodes, mermaid=chart, now=now)


def diagram_states(state: RunState, blueprint: Blueprint) -> dict[str, str]:
    """Node id -> the colour state of its instance in the root frame (nodes not reached: none)."""
    drawn = {node.id for node in blueprint.nodes}
    states: dict[str, str] = {}
    for (node_id, frame), record in state.nodes.items():
        if frame == ROOT and node_id in drawn:
            status = record.status.value
            states[node_id] = _DIAGRAM_ALIASES.get(status, status)
    return {k: v for k, v in states.items() if v in STATE_STYLES}


def _ordered(state: RunState, blueprint: Blueprint) -> list[NodeRecord]:
    order = {node.id: index for index, node in enumerate(blueprint.nodes)}
    last = len(order)
    return sorted(state.nodes.values(), key=lambda r: (r.frame, order.get(r.node_id, last)))


def _node_view(record: NodeRecord, blueprint: Blueprint) -> NodeView:
    error = record.error.as_dict() if record.error is not None else None
    awaiting = record.status is NodeStatus.AWAITING
    return NodeView(
        node_id=record.node_id,
        frame=record.frame,
        status=record.status.value,
        attempt=record.attempt,
        input=record.input,
        output=record.output,
        action=record.action,
        error=error,
        due_at=record.due_at,
        child_run_id=record.child_run_id,
        started_at=record.started_at,
        finished_at=record.finished_at,
        actions=resume_actions(blueprint, record.node_id) if awaiting else (),
    )


def resume_actions(blueprint: Blueprint, node_id: str) -> tuple[str, ...]:
    """The actions the edges leaving ``node_id`` (top level) declare, sorted."""
    found = {e.action for e in blueprint.edges if e.source == node_id and e.action}
    return tuple(sorted(a for a in found if a is not None))
