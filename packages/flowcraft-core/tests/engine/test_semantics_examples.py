"""The worked examples of SEMANTICS-EXAMPLES.md, on the decision core through the simulator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from flowcraft.core._engine.actions import ScheduleTimer
from flowcraft.core._engine.events import TimerPurpose
from flowcraft.core._engine.plan import (
    EdgeSpec,
    Join,
    LoopSpec,
    MapSpec,
    NodeKind,
    Plan,
    PlanNode,
    RetryPolicy,
    SubflowSpec,
    build_plan,
)
from flowcraft.core._engine.simulator import Call, Outcome, Simulator
from flowcraft.core._engine.state import NodeStatus, RunStatus
from flowcraft.core.testing import Behaviours
from flowcraft.core.testing import PyExpression as PyExpr


def plan(nodes: list[PlanNode], edges: list[EdgeSpec], id: str = "bp") -> Plan:
    return build_plan(id=id, version="1", nodes=nodes, edges=edges)


def edge(
    source: str, target: str, *, action: str | None = None, condition: PyExpr | None = None
) -> EdgeSpec:
    return EdgeSpec(source=source, target=target, action=action, condition=condition)


def _status(sim: Simulator, node: str, frame: str = "", run: str = "run") -> NodeStatus | None:
    record = sim.runs[run].state.nodes.get((node, frame))
    return None if record is None else record.status


def _gt5(scope: Mapping[str, Any]) -> bool:
    return bool(scope["input"] > 5)


@pytest.mark.parametrize("duplicate", [False, True])
def test_1_dead_path_elimination_through_all_join(b: Behaviours, duplicate: bool) -> None:
    p = plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="P", uses="echo"),
            PlanNode(id="Q", uses="q"),
            PlanNode(id="J", uses="count"),
        ],
        [
            edge("S", "P", condition=PyExpr("input > 5", _gt5)),
            edge("S", "Q"),
            edge("P", "J"),
            edge("Q", "J"),
        ],
    )
    j_inputs: list[object] = []

    def j(call: Call) -> object:
        j_inputs.append(call.input)
        return b.count(call)

    sim = Simulator(
        {"bp": p},
        {"one": b.const(1), "echo": b.echo, "q": b.const("q"), "count": j},
        duplicate=duplicate,
    )
    run = sim.start("bp", 1)
    sim.run_until_idle()
    assert _status(sim, "P") is NodeStatus.SKIPPED
    assert j_inputs == [{"Q": "q"}]
    assert sim.status() is RunStatus.COMPLETED
    assert run.state.output == "J"


def test_2_everything_pruned_means_skipped_not_stuck(b: Behaviours) -> None:
    never = PyExpr("false", lambda s: False)
    p = plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="P", uses="echo"),
            PlanNode(id="T", uses="echo"),
        ],
        [edge("S", "P", condition=never), edge("P", "T")],
    )
    sim = Simulator({"bp": p}, {"one": b.const(1), "echo": b.echo})
    run = sim.start("bp")
    sim.run_until_idle()
    assert (_status(sim, "P"), _status(sim, "T")) == (NodeStatus.SKIPPED, NodeStatus.SKIPPED)
    assert sim.status() is RunStatus.COMPLETED
    assert run.state.output is None


@pytest.mark.parametrize("duplicate", [False, True])
def test_3_any_fires_once_per_frame(b: Behaviours, duplicate: bool) -> None:
    p = plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="A", uses="a"),
            PlanNode(id="B", uses="b"),
            PlanNode(id="C", uses="c"),
            PlanNode(id="J", uses="count", join=Join.ANY),
        ],
        [
            edge("S", "A"),
            edge("S", "B"),
            edge("S", "C"),
            edge("A", "J"),
            edge("B", "J"),
            edge("C", "J"),
        ],
    )
    inputs: list[object] = []

    def j(call: Call) -> object:
        inputs.append(call.input)
        return b.count(call)

    sim = Simulator(
        {"bp": p},
        {"one": b.const(1), "a": b.const("a"), "b": b.const("b"), "c": b.const("c"), "count": j},
        duplicate=duplicate,
    )
    sim.start("bp")
    sim.run_until_idle()
    assert b.log == ["J"]
    assert inputs == [{"A": "a"}]
    assert sim.status() is RunStatus.COMPLETED


def _routing_plan() -> Any:
    return plan(
        [
            PlanNode(id="S", uses="s"),
            PlanNode(id="Y", uses="count"),
            PlanNode(id="N", uses="count"),
            PlanNode(id="D", uses="count"),
        ],
        [edge("S", "Y", action="yes"), edge("S", "N", action="no"), edge("S", "D")],
    )


def test_4_action_routing(b: Behaviours) -> None:
    sim = Simulator({"bp": _routing_plan()}, {"s": b.act("no"), "count": b.count})
    run = sim.start("bp")
    sim.run_until_idle()
    assert b.log == ["N"]
    assert (_status(sim, "Y"), _status(sim, "D")) == (NodeStatus.SKIPPED, NodeStatus.SKIPPED)
    assert run.state.output == {"N": "N"}


def test_5_unmatched_action_falls_back_to_default_edges(b: Behaviours) -> None:
    sim = Simulator({"bp": _routing_plan()}, {"s": b.act("maybe"), "count": b.count})
    sim.start("bp")
    sim.run_until_idle()
    assert b.log == ["D"]


def test_5b_unmatched_action_without_default_edge_completes(b: Behaviours) -> None:
    p = plan(
        [PlanNode(id="S", uses="s"), PlanNode(id="Y", uses="count")], [edge("S", "Y", action="yes")]
    )
    sim = Simulator({"bp": p}, {"s": b.act("maybe"), "count": b.count})
    sim.start("bp")
    sim.run_until_idle()
    assert b.log == []
    assert sim.status() is RunStatus.COMPLETED


def test_6_no_action_never_takes_action_edges(b: Behaviours) -> None:
    sim = Simulator({"bp": _routing_plan()}, {"s": b.const(1), "count": b.count})
    sim.start("bp")
    sim.run_until_idle()
    assert b.log == ["D"]


def test_7_retries_with_backoff(b: Behaviours) -> None:
    retry = RetryPolicy(max_attempts=3, delay=0.1, backoff=2, jitter=0.1)
    p = plan([PlanNode(id="F", uses="f", retry=retry)], [])
    sim = Simulator({"bp": p}, {"f": b.fail(2)})
    run = sim.start("bp")
    sim.run_until_idle()
    times = [c.now for c in sim.calls]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.2
    assert times[2] - times[1] <= 0.2 * 1.1 + 1e-9
    assert run.state.output == "ok"
    retries = [n for d in run.decisions for n in d.notices if getattr(n, "retrying", False)]
    assert len(retries) == 2


def test_7b_retries_exhausted_fail_with_original_error(b: Behaviours) -> None:
    retry = RetryPolicy(max_attempts=3, delay=0.1, backoff=2)
    sim = Simulator({"bp": plan([PlanNode(id="F", uses="f", retry=retry)], [])}, {"f": b.fail(3)})
    run = sim.start("bp")
    sim.run_until_idle()
    assert sim.status() is RunStatus.FAILED
    (error,) = run.state.errors
    assert (error.node_id, error.attempt, error.type, error.message) == (
        "F",
        3,
        "RuntimeError",
        "boom",
    )


def test_8_fallback_stands_in_and_routing_continues(b: Behaviours) -> None:
    p = plan(
        [
            PlanNode(id="S", uses="s", fallback="H"),
            PlanNode(id="H", uses="echo"),
            PlanNode(id="T", uses="echo"),
        ],
        [edge("S", "T")],
    )
    sim = Simulator({"bp": p}, {"s": b.fail(9), "echo": b.echo})
    run = sim.start("bp", "in")
    sim.run_until_idle()
    assert p.start_nodes == ("S",)
    assert p.terminal_nodes == ("T",)
    h_input = run.state.nodes[("H", "")].input
    assert isinstance(h_input, dict)
    assert h_input["input"] == "in"
    assert h_input["error"]["message"] == "boom"
    assert run.state.nodes[("T", "")].input == h_input
    assert sim.status() is RunStatus.COMPLETED
    assert [c.node_id for c in sim.calls].count("H") == 1


def test_9_fail_fast_and_fallback_never_hides_another_failure(b: Behaviours) -> None:
    p = plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="A", uses="fail", fallback="H"),
            PlanNode(id="H", uses="h"),
            PlanNode(id="B", uses="fail", retry=RetryPolicy(max_attempts=2, delay=0.5)),
            PlanNode(id="J", uses="count"),
        ],
        [edge("S", "A"), edge("S", "B"), edge("A", "J"), edge("B", "J")],
    )
    sim = Simulator(
        {"bp": p}, {"one": b.const(1), "fail": b.fail(9), "h": b.const("h"), "count": b.count}
    )
    run = sim.start("bp")
    sim.run_until_idle()
    assert sim.status() is RunStatus.FAILED
    assert [e.node_id for e in run.state.errors] == ["B"]
    assert run.state.nodes[("H", "")].output == "h"
    assert b.log == []


def test_10_buffered_context_writes() -> None:
    def node(call: Call) -> object:
        if call.attempt == 1:
            raise RuntimeError("first")
        return Outcome(output="done", writes={"j": 2})

    def first_attempt_writes(call: Call) -> object:
        # a failing attempt's writes never reach the core: they are dropped with the attempt
        return node(call)

    p = plan([PlanNode(id="N", uses="n", retry=RetryPolicy(max_attempts=2))], [])
    sim = Simulator({"bp": p}, {"n": first_attempt_writes}, duplicate=True)
    run = sim.start("bp")
    sim.run_until_idle()
    assert run.state.context == {"j": 2}


def _wait_plan() -> Any:
    return plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="W", kind=NodeKind.WAIT),
            PlanNode(id="OK", uses="echo"),
            PlanNode(id="NO", uses="echo"),
        ],
        [edge("S", "W"), edge("W", "OK", action="approve"), edge("W", "NO", action="reject")],
    )


def test_11_wait_with_action(b: Behaviours) -> None:
    sim = Simulator({"bp": _wait_plan()}, {"one": b.const(1), "echo": b.echo})
    run = sim.start("bp")
    sim.run_until_idle()
    assert sim.status() is RunStatus.AWAITING
    assert sim.resume("run", "W", action="approve", output={"by": "ann"}).rejection is None
    sim.run_until_idle()
    assert run.state.nodes[("OK", "")].input == {"by": "ann"}
    assert _status(sim, "NO") is NodeStatus.SKIPPED
    assert sim.status() is RunStatus.COMPLETED
    again = sim.resume("run", "W", action="approve", output={"by": "ann"})
    assert again.rejection is None
    assert again.actions == []
    assert again.notices == []
    wrong = sim.resume("run", "OK")
    assert wrong.rejection is not None
    assert wrong.rejection.code == "not-awaiting"
    assert "'OK'" in wrong.rejection.message


def test_12_two_waits(b: Behaviours) -> None:
    p = plan(
        [
            PlanNode(id="S", uses="one"),
            PlanNode(id="W1", kind=NodeKind.WAIT),
            PlanNode(id="W2", kind=NodeKind.WAIT),
            PlanNode(id="J", uses="count"),
        ],
        [edge("S", "W1"), edge("S", "W2"), edge("W1", "J"), edge("W2", "J")],
    )
    sim = Simulator({"bp": p}, {"one": b.const(1), "count": b.count})
    sim.start("bp")
    sim.run_until_idle()
    sim.resume("run", "W1", output=1)
    sim.run_until_idle()
    assert sim.status() is RunStatus.AWAITING
    assert b.log == []
    sim.resume("run", "W2", output=2)
    sim.run_until_idle()
    assert b.log == ["J"]
    assert sim.status() is RunStatus.COMPLETED


def _loop_plan(max_iterations: int) -> Any:
    body = plan([PlanNode(id="inc", uses="inc")], [], id="body")
    cond = PyExpr("input < 3", lambda s: s["input"] in (0, 1, 2))
    loop = LoopSpec(body=body, condition=cond, max_iterations=max_iterations)
    return plan([PlanNode(id="L", kind=NodeKind.LOOP, loop=loop)], [])


def test_13_loop_frames() -> None:
    sim = Simulator({"bp": _loop_plan(10)}, {"inc": lambda c: int(c.input) + 1})  # type: ignore[call-overload]
    run = sim.start("bp", 0)
    sim.run_until_idle()
    assert [c.frame for c in sim.calls] == ["L#0", "L#1", "L#2"]
    assert run.state.output == 3


def test_13b_loop_limit_fails_naming_loop_and_limit() -> None:
    sim = Simulator({"bp": _loop_plan(2)}, {"inc": lambda c: int(c.input) + 1})  # type: ignore[call-overload]
    run = sim.start("bp", 0)
    sim.run_until_idle()
    assert sim.status() is RunStatus.FAILED
    (error,) = run.state.errors
    assert error.node_id == "L"
    assert "max_iterations=2" in error.message


def test_14_map_output_in_item_order() -> None:
    body = plan([PlanNode(id="item", uses="slow")], [], id="body")
    spec = MapSpec(body=body, items=None, concurrency=3)
    p = plan([PlanNode(id="M", kind=NodeKind.MAP, map=spec)], [])

    def slow(call: Call) -> object:
        assert isinstance(call.input, int)
        return Outcome(output=call.input * 10, duration=call.input / 10)

    sim = Simulator({"bp": p}, {"slow": slow})
    run = sim.start("bp", [3, 1, 2])
    sim.run_until_idle()
    assert run.state.output == [30, 10, 20]
    assert sorted(c.frame for c in sim.calls) == ["M[0]", "M[1]", "M[2]"]


def _subflow_plans() -> dict[str, Any]:
    child = plan([PlanNode(id="CW", kind=NodeKind.WAIT)], [], id="child")
    parent = plan(
        [PlanNode(id="SF", kind=NodeKind.SUBFLOW, subflow=SubflowSpec(blueprint="child"))],
        [],
        id="parent",
    )
    return {"child": child, "parent": parent}


def test_15_subflow_await_and_resume() -> None:
    sim = Simulator(_subflow_plans(), {})
    run = sim.start("parent", "x")
    sim.run_until_idle()
    assert sim.status() is RunStatus.AWAITING
    (child_id,) = [r for r in sim.runs if r != "run"]
    sim.resume(child_id, "CW", output="approved")
    sim.run_until_idle()
    assert sim.status(child_id) is RunStatus.COMPLETED
    assert sim.status() is RunStatus.COMPLETED
    assert run.state.output == "approved"


def test_15b_resume_on_parent_reaches_child() -> None:
    sim = Simulator(_subflow_plans(), {})
    run = sim.start("parent", "x")
    sim.run_until_idle()
    sim.resume("run", "SF", output="via-parent")
    sim.run_until_idle()
    assert run.state.output == "via-parent"


def test_15c_cancelling_parent_cancels_child() -> None:
    sim = Simulator(_subflow_plans(), {})
    sim.start("parent", "x")
    sim.run_until_idle()
    sim.cancel("run")
    sim.run_until_idle()
    (child_id,) = [r for r in sim.runs if r != "run"]
    assert sim.status() is RunStatus.CANCELLED
    assert sim.status(child_id) is RunStatus.CANCELLED


def test_16_cancellation_keeps_committed_work() -> None:
    p = plan([PlanNode(id="A", uses="a"), PlanNode(id="B", uses="b")], [edge("A", "B")])

    def a(call: Call) -> object:
        return Outcome(output=1, writes={"a": 1})

    def b_slow(call: Call) -> object:
        return Outcome(output="late", duration=10)

    sim = Simulator({"bp": p}, {"a": a, "b": b_slow})
    run = sim.start("bp")
    sim.run_until(1.0)  # A has succeeded; B runs until t=10
    assert _status(sim, "B") is NodeStatus.RUNNING
    decision = sim.cancel("run")
    assert any(type(x).__name__ == "CancelNode" for x in decision.actions)
    sim.run_until_idle()
    assert sim.status() is RunStatus.CANCELLED
    assert run.state.context == {"a": 1}
    assert run.state.nodes[("A", "")].output == 1
    assert _status(sim, "B") is NodeStatus.CANCELLED


def test_sleep_is_a_durable_timer() -> None:
    from flowcraft.core._engine.plan import SleepSpec

    p = plan([PlanNode(id="Z", kind=NodeKind.SLEEP, sleep=SleepSpec(seconds=5))], [])
    sim = Simulator({"bp": p}, {})
    run = sim.start("bp", "payload")
    sim.run_until_idle()
    assert sim.now == 5
    assert run.state.output == "payload"
    timers = [a for d in run.decisions for a in d.actions if isinstance(a, ScheduleTimer)]
    assert [t.purpose for t in timers] == [TimerPurpose.SLEEP]
