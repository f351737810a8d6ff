"""The one final result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.scope import has_output
from flowcraft.core._engine.state import NodeError, NodeStatus, RunState, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitingNode:
    """A node instance that waits to be resumed: how to resume it.

    ``resume(node_id, frame=frame, ...)`` or ``resume(token=token, ...)``, with one of
    ``actions`` (the actions of its outgoing edges; empty: it routes without one).
    """

    node_id: str
    frame: str
    token: str | None
    actions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "node_id": self.node_id,
            "frame": self.frame,
            "token": self.token,
            "actions": list(self.actions),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """``{run_id, status, output, context, outputs, errors, awaiting}`` of a run.

    ``outputs`` holds the top-level nodes that produced an output (a node whose fallback stood
    in for it shows the fallback's output). ``errors`` is empty unless the run failed.
    ``awaiting`` lists the nodes an awaiting run waits on, with how to resume each.
    """

    run_id: str
    status: RunStatus
    output: Any = None
    context: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    errors: tuple[NodeError, ...] = ()
    awaiting: tuple[AwaitingNode, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status is RunStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the CLI prints)."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "output": self.output,
            "context": self.context,
            "outputs": self.outputs,
            "errors": [e.as_dict() for e in self.errors],
            **({"awaiting": [a.to_dict() for a in self.awaiting]} if self.awaiting else {}),
        }


def result_of(state: RunState) -> RunResult:
    """The result as the state stands now."""
    outputs = {
        record.node_id: record.output
        for record in state.nodes.values()
        if record.frame == ROOT and has_output(record)
    }
    return RunResult(
        run_id=state.run_id,
        status=state.status,
        output=state.output,
        context=dict(state.context),
        outputs=outputs,
        errors=tuple(state.errors),
        awaiting=_awaiting(state),
    )


def _awaiting(state: RunState) -> tuple[AwaitingNode, ...]:
    """The awaiting node instances (of an awaiting run: a subflow node waits with its child)."""
    if state.status is not RunStatus.AWAITING:
        return ()
    return tuple(
        AwaitingNode(
            node_id=record.node_id,
            frame=record.frame,
            token=record.token,
            actions=_actions(state, record.node_id, record.frame),
        )
        for record in state.nodes.values()
        if record.status is NodeStatus.AWAITING
    )


def _actions(state: RunState, node_id: str, frame: str) -> tuple[str, ...]:
    edges = state.frames[frame].plan.outgoing.get(node_id, ())
    return tuple(sorted({e.action for e in edges if e.action is not None}))
