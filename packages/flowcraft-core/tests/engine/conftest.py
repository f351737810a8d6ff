"""Shared helpers for the decision-core tests: a tiny plan DSL and node behaviours."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest

from flowcraft.core._engine.plan import EdgeSpec, Plan, PlanNode, build_plan
from flowcraft.core._engine.simulator import Call, Impl, Outcome


@dataclass(frozen=True)
class PyExpr:
    """A test double for a compiled expression (unit tests of the core only)."""

    source: str
    fn: Callable[[Mapping[str, object]], object]

    def evaluate(self, scope: Mapping[str, object]) -> object:
        return self.fn(scope)


def plan(nodes: list[PlanNode], edges: list[EdgeSpec], id: str = "bp") -> Plan:
    return build_plan(id=id, version="1", nodes=nodes, edges=edges)


def edge(source: str, target: str, **kw: object) -> EdgeSpec:
    return EdgeSpec(source=source, target=target, **kw)  # type: ignore[arg-type]


class Behaviours:
    """Node behaviours of SEMANTICS-EXAMPLES.md, with an execution log."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self._failures: dict[str, int] = {}

    def const(self, value: object) -> Impl:
        return lambda call: value

    def echo(self, call: Call) -> object:
        return call.input

    def act(self, action: str) -> Impl:
        return lambda call: Outcome(output=None, action=action)

    def fail(self, n: int) -> Impl:
        def run(call: Call) -> object:
            if call.attempt <= n:
                raise RuntimeError("boom")
            return "ok"

        return run

    def count(self, call: Call) -> object:
        self.log.append(call.node_id)
        return call.node_id


@pytest.fixture
def behaviours() -> Behaviours:
    return Behaviours()
