"""The one final result of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.scope import has_output
from flowcraft.core._engine.state import NodeError, RunState, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """``{run_id, status, output, context, outputs, errors}`` of a run.

    ``outputs`` holds the top-level nodes that produced an output (a node whose fallback stood
    in for it shows the fallback's output). ``errors`` is empty unless the run failed.
    """

    run_id: str
    status: RunStatus
    output: Any = None
    context: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    errors: tuple[NodeError, ...] = ()

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
    )
