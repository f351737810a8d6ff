"""Property tests of the decision core on random DAGs (hypothesis).

Invariants: every run terminates with exactly one terminal transition; no node instance runs an
attempt twice or succeeds twice; joins fire once per frame; skipped nodes never run; duplicated
events change nothing; and, without failures, the outcome matches a tiny reference interpreter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from flowcraft.core._engine.actions import NodeNotice
from flowcraft.core._engine.plan import EdgeSpec, Join, Plan, PlanNode, RetryPolicy, build_plan
from flowcraft.core._engine.simulator import Call, Outcome, Simulator
from flowcraft.core._engine.state import NodeStatus, RunStatus
from flowcraft.core.testing import PyExpression as PyExpr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ACTIONS = (None, "a", "b")
TRUE = PyExpr("true", lambda s: True)
FALSE = PyExpr("false", lambda s: False)


@dataclass(frozen=True)
class NodeSpec:
    action: str | None
    failures: int
    attempts: int
    join: Join


@dataclass(frozen=True)
class Graph:
    nodes: tuple[NodeSpec, ...]
    edges: tuple[tuple[int, int, str | None, bool | None], ...]  # src, dst, action, condition

    def plan(self) -> Plan:
        nodes = [
            PlanNode(
                id=f"n{i}",
                uses=f"n{i}",
                join=spec.join,
                retry=RetryPolicy(max_attempts=spec.attempts, delay=0.01, backoff=2),
            )
            for i, spec in enumerate(self.nodes)
        ]
        edges = [
            EdgeSpec(
                source=f"n{s}",
                target=f"n{t}",
                action=a,
                condition=None if c is None else (TRUE if c else FALSE),
            )
            for s, t, a, c in self.edges
        ]
        return build_plan(id="g", version="1", nodes=nodes, edges=edges)


@st.composite
def graphs(draw: st.DrawFn, *, failures: bool = True) -> Graph:
    n = draw(st.integers(1, 9))
    specs = tuple(
        NodeSpec(
            action=draw(st.sampled_from(ACTIONS)),
            failures=draw(st.integers(0, 2)) if failures else 0,
            attempts=draw(st.integers(1, 3)),
            join=draw(st.sampled_from([Join.ALL, Join.ANY])),
        )
        for _ in range(n)
    )
    pairs = [(s, t) for s in range(n) for t in range(s + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=14)) if pairs else []
    edges = tuple(
        (s, t, draw(st.sampled_from(ACTIONS)), draw(st.sampled_from([None, None, True, False])))
        for s, t in sorted(chosen)
    )
    return Graph(nodes=specs, edges=edges)


def _registry(graph: Graph) -> dict[str, object]:
    def make(i: int, spec: NodeSpec) -> object:
        def run(call: Call) -> object:
            if call.attempt <= spec.failures:
                raise RuntimeError(f"n{i} attempt {call.attempt}")
            return Outcome(output=i, action=spec.action, duration=0.03 * ((i * 7) % 5))

        return run

    return {f"n{i}": make(i, spec) for i, spec in enumerate(graph.nodes)}


def _simulate(graph: Graph, *, duplicate: bool) -> Simulator:
    sim = Simulator({"g": graph.plan()}, _registry(graph), duplicate=duplicate)  # type: ignore[arg-type]
    sim.start("g", "in")
    sim.run_until_idle(max_steps=100_000)
    return sim


def _final(sim: Simulator) -> dict[str, object]:
    state = sim.runs["run"].state
    return {
        "status": state.status,
        "output": state.output,
        "nodes": {k: (r.status, r.attempt, r.output, r.input) for k, r in state.nodes.items()},
        "errors": [(e.node_id, e.attempt, e.message) for e in state.errors],
    }


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graphs())
def test_invariants_hold(graph: Graph) -> None:
    sim = _simulate(graph, duplicate=False)
    run = sim.runs["run"]
    assert run.state.status in (RunStatus.COMPLETED, RunStatus.FAILED)
    assert [d.finished for d in run.decisions if d.finished] == [run.state.status]
    assert sum(d.settled for d in run.decisions) == 1
    assert run.state.busy == 0
    attempts = Counter((c.node_id, c.frame, c.attempt) for c in sim.calls)
    assert all(count == 1 for count in attempts.values())
    succeeded = Counter(
        (n.node_id, n.frame)
        for d in run.decisions
        for n in d.notices
        if isinstance(n, NodeNotice) and n.status is NodeStatus.SUCCEEDED
    )
    assert all(count == 1 for count in succeeded.values())
    skipped = {k for k, r in run.state.nodes.items() if r.status is NodeStatus.SKIPPED}
    assert not skipped & {(c.node_id, c.frame) for c in sim.calls}
    assert run.state.busy == 0 or sim.status() is RunStatus.FAILED
    if sim.status() is RunStatus.FAILED:
        assert len(run.state.errors) == 1


@SETTINGS
@given(graphs())
def test_duplicated_events_change_nothing(graph: Graph) -> None:
    once = _simulate(graph, duplicate=False)
    twice = _simulate(graph, duplicate=True)
    assert _final(twice) == _final(once)
    assert Counter((c.node_id, c.attempt) for c in twice.calls) == Counter(
        (c.node_id, c.attempt) for c in once.calls
    )


def _reference(graph: Graph) -> tuple[dict[str, NodeStatus], dict[str, object]]:
    """Statuses and all-join inputs by plain topological evaluation (no failures)."""
    n = len(graph.nodes)
    ran: dict[int, bool] = {}
    taken: dict[tuple[int, int, int], bool] = {}
    inputs: dict[str, object] = {}
    for i in range(n):
        incoming = [(k, e) for k, e in enumerate(graph.edges) if e[1] == i]
        arrivals = [(k, e) for k, e in incoming if taken[(k, e[0], i)]]
        ran[i] = not incoming or bool(arrivals)
        if ran[i] and len(incoming) > 1 and graph.nodes[i].join is Join.ALL:
            inputs[f"n{i}"] = {f"n{e[0]}": e[0] for _k, e in arrivals}
        outgoing = [(k, e) for k, e in enumerate(graph.edges) if e[0] == i]
        action = graph.nodes[i].action
        holds = [(k, e) for k, e in outgoing if e[3] is not False]
        chosen = [(k, e) for k, e in holds if action is not None and e[2] == action]
        if not chosen:
            chosen = [(k, e) for k, e in holds if e[2] is None]
        chosen_ids = {k for k, _ in chosen}
        for k, e in outgoing:
            taken[(k, i, e[1])] = ran[i] and k in chosen_ids
    statuses = {f"n{i}": NodeStatus.SUCCEEDED if ran[i] else NodeStatus.SKIPPED for i in range(n)}
    return statuses, inputs


@SETTINGS
@given(graphs(failures=False))
def test_matches_reference_interpreter(graph: Graph) -> None:
    sim = _simulate(graph, duplicate=False)
    state = sim.runs["run"].state
    expected, inputs = _reference(graph)
    assert {k[0]: r.status for k, r in state.nodes.items()} == expected
    for node_id, value in inputs.items():
        assert state.nodes[(node_id, "")].input == value
    assert state.status is RunStatus.COMPLETED
