"""What a run's page shows: node colours, order, actions, liveness (``_ui.view``)."""

from __future__ import annotations

from flowcraft.core import Blueprint, BlueprintSet, NodeStatus, parse_blueprint
from flowcraft.core._engine.state import NodeRecord, RunState
from flowcraft.core._ui.view import diagram_states, resume_actions, run_view, terminal
from flowcraft.core.ports import RunRecord


def n(node_id: str, uses: str) -> dict[str, object]:
    return {"id": node_id, "uses": uses}


def e(source: str, target: str, action: str | None = None) -> dict[str, object]:
    return {"source": source, "target": target, "action": action}


def bp(name: str, nodes: list[dict[str, object]], edges: list[dict[str, object]]) -> Blueprint:
    return parse_blueprint({"id": name, "version": "1", "nodes": nodes, "edges": edges})


BLUEPRINT = bp(
    "chain",
    [n("A", "app.echo"), n("S", "app.sleep"), n("W", "flowcraft.wait"), n("B", "app.echo")],
    [e("A", "S"), e("S", "W"), e("W", "B", action="go"), e("W", "B", action="also")],
)


def _state(*records: NodeRecord) -> RunState:
    plan = BlueprintSet([BLUEPRINT]).latest("chain").plan
    return RunState(run_id="r", plan=plan, nodes={r.key: r for r in records})


def _record(status: str, created: float = 100.0, updated: float = 104.0) -> RunRecord:
    return RunRecord(run_id="r", blueprint_id="chain", blueprint_version="1", blueprint_digest="d",
                     status=status, created_at=created, updated_at=updated)  # fmt: skip


def test_root_frame_instances_colour_the_diagram_and_sleeping_borrows_awaiting() -> None:
    state = _state(
        NodeRecord(node_id="A", frame="", status=NodeStatus.SUCCEEDED),
        NodeRecord(node_id="S", frame="", status=NodeStatus.SLEEPING),
        NodeRecord(node_id="B", frame="loop/0", status=NodeStatus.RUNNING),
    )
    assert diagram_states(state, BLUEPRINT) == {"A": "succeeded", "S": "awaiting"}
    chart = run_view(_record("running"), state, BLUEPRINT, now=0.0).mermaid
    assert chart is not None
    assert "class n0 succeeded" in chart
    assert "class n1 awaiting" in chart


def test_nodes_are_listed_by_frame_then_blueprint_order() -> None:
    state = _state(
        NodeRecord(node_id="B", frame="", status=NodeStatus.PENDING),
        NodeRecord(node_id="A", frame="", status=NodeStatus.SUCCEEDED),
        NodeRecord(node_id="A", frame="f/1", status=NodeStatus.RUNNING),
    )
    view = run_view(_record("running"), state, BLUEPRINT, now=0.0)
    assert [(v.node_id, v.frame) for v in view.nodes] == [("A", ""), ("B", ""), ("A", "f/1")]


def test_an_awaiting_node_offers_its_edges_actions() -> None:
    assert resume_actions(BLUEPRINT, "W") == ("also", "go")
    assert resume_actions(BLUEPRINT, "A") == ()
    state = _state(NodeRecord(node_id="W", frame="", status=NodeStatus.AWAITING))
    (node,) = run_view(_record("awaiting"), state, BLUEPRINT, now=0.0).nodes
    assert node.actions == ("also", "go")


def test_live_runs_count_time_to_now_finished_ones_to_their_last_save() -> None:
    assert run_view(_record("running"), None, None, now=110.0).elapsed == 10.0
    finished = run_view(_record("failed"), None, None, now=110.0)
    assert (finished.live, finished.elapsed) == (False, 4.0)
    assert not terminal("no-such-status")
    assert terminal("cancelled")
