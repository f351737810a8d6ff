"""The in-memory FlowRuntime and the distributed runtime (in-memory backend, 2 workers) give
identical results, and identical lifecycle events, on random blueprints."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from flowcraft.core import Blueprint, FlowRuntime, RunResult, parse_blueprint
from flowcraft.core.events import FlowEvent, NodeEvent
from flowcraft.core.testing import nodes
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.memory import MemoryBackendFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONDITIONS = (None, None, "true", "false", "result == null", "size(string(result)) > 1")


@st.composite
def blueprints(draw: st.DrawFn) -> Blueprint:
    count = draw(st.integers(1, 7))
    node_docs: list[dict[str, Any]] = []
    for i in range(count):
        kind = draw(st.sampled_from(["const", "act", "fail"]))
        doc: dict[str, Any] = {"id": f"n{i}", "uses": f"suite.{kind}"}
        if kind == "const":
            doc["params"] = {"value": i * 11}
        elif kind == "act":
            doc["params"] = {"action": draw(st.sampled_from(["a", "b"])), "output": i}
        else:
            doc["params"] = {"times": draw(st.integers(0, 2))}
            doc["config"] = {"retry": {"max_attempts": draw(st.integers(1, 3)), "delay": 0}}
        if draw(st.booleans()):
            doc.setdefault("config", {})["join"] = "any"
        node_docs.append(doc)
    pairs = [(s, t) for s in range(count) for t in range(s + 1, count)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=10)) if pairs else []
    edges = []
    for s, t in sorted(chosen):
        edge: dict[str, Any] = {"source": f"n{s}", "target": f"n{t}"}
        action = draw(st.sampled_from([None, None, "a", "b"]))
        condition = draw(st.sampled_from(CONDITIONS))
        if action:
            edge["action"] = action
        if condition:
            edge["condition"] = condition
        edges.append(edge)
    data = {"id": "random", "version": "1", "nodes": node_docs, "edges": edges}
    return parse_blueprint(data, registry=nodes.registry())


def _comparable(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "output": result.output,
        "outputs": result.outputs,
        "context": result.context,
        "errors": [(e.node_id, e.attempt, e.type, e.message) for e in result.errors],
    }


_Events = Counter[tuple[str, str, str, int]]


def _lifecycle(events: list[FlowEvent]) -> _Events:
    """The events as (type, node id, frame, attempt), run events with node "-"."""
    return Counter(
        (type(e).__name__, e.node_id, e.frame, e.attempt)
        if isinstance(e, NodeEvent)
        else (type(e).__name__, "-", "", 0)
        for e in events
    )


async def _both(blueprint: Blueprint) -> tuple[RunResult, RunResult, _Events, _Events]:
    runtime = FlowRuntime(registry=nodes.registry())
    local: list[FlowEvent] = []
    runtime.events.subscribe(local.append)
    in_memory = await runtime.run(blueprint, {"x": 1}, timeout=10)
    runtime.close()
    remote: list[FlowEvent] = []
    async with Harness(MemoryBackendFactory()).session(blueprint, workers=2) as session:
        session.events.subscribe(remote.append)
        distributed = await session.run("random", {"x": 1}, timeout=20)
    return in_memory, distributed, _lifecycle(local), _lifecycle(remote)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blueprints())
def test_same_results_in_memory_and_distributed(blueprint: Blueprint) -> None:
    in_memory, distributed, local, remote = asyncio.run(_both(blueprint))
    assert _comparable(distributed) == _comparable(in_memory)
    assert remote == local
