"""Blueprint (the validated document model) -> Plan (what the decision core reads). Pure.

Expressions are compiled here, once; construct params become typed specs; a map that names a
``uses`` gets a one-node body whose node carries the map's id (item ``i`` of map ``M`` is the
instance ``(M, "M[i]")``). A loop or subflow that names another blueprint is resolved through
``resolve`` (the runtime's blueprint registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flowcraft.core._engine import plan as p
from flowcraft.core._expressions import DEFAULT_BUDGET, CompiledExpression, compile_expression
from flowcraft.core._model import kinds
from flowcraft.core._model.config import NodeConfig
from flowcraft.core._model.graph import Blueprint, Edge, Graph, Node

Resolver = Callable[[str], p.Plan]


@dataclass(frozen=True, slots=True)
class _How:
    """How to compile: where named blueprints come from, and each expression's budget."""

    resolve: Resolver | None
    budget: float


_KINDS = {
    kinds.WAIT: p.NodeKind.WAIT,
    kinds.SLEEP: p.NodeKind.SLEEP,
    kinds.SUBFLOW: p.NodeKind.SUBFLOW,
    kinds.MAP: p.NodeKind.MAP,
    kinds.LOOP: p.NodeKind.LOOP,
}


def compile_blueprint(
    blueprint: Blueprint,
    resolve: Resolver | None = None,
    *,
    expression_budget: float = DEFAULT_BUDGET,
) -> p.Plan:
    """The plan of a validated blueprint; each expression gets ``expression_budget`` seconds."""
    version = blueprint.version or "0"
    return _graph(blueprint.id, version, blueprint.graph, _How(resolve, expression_budget))


def _graph(plan_id: str, version: str, graph: Graph, how: _How) -> p.Plan:
    return p.build_plan(
        id=plan_id,
        version=version,
        nodes=[_node(plan_id, version, n, how) for n in graph.nodes],
        edges=[_edge(e, how) for e in graph.edges],
    )


def _expr(source: str | None, how: _How) -> CompiledExpression | None:
    return None if source is None else compile_expression(source).with_budget(how.budget)


def _edge(edge: Edge, how: _How) -> p.EdgeSpec:
    return p.EdgeSpec(
        source=edge.source,
        target=edge.target,
        action=edge.action,
        condition=_expr(edge.condition, how),
        transform=_expr(edge.transform, how),
    )


def _retry(config: NodeConfig) -> p.RetryPolicy:
    retry = config.retry
    if retry.max_attempts == 1:
        return p.NO_RETRY
    return p.RetryPolicy(
        max_attempts=retry.max_attempts,
        delay=retry.delay,
        backoff=retry.backoff,
        max_delay=retry.max_delay,
        jitter=retry.jitter,
    )


def _node(owner: str, version: str, node: Node, how: _How) -> p.PlanNode:
    kind = _KINDS.get(node.uses, p.NodeKind.TASK)
    config = node.config
    base = p.PlanNode(
        id=node.id,
        kind=kind,
        uses=node.uses,
        params=dict(node.params),
        inputs=node.inputs,
        retry=_retry(config),
        timeout=config.timeout,
        fallback=config.fallback,
        join=p.Join(config.join),
    )
    if kind is p.NodeKind.TASK or kind is p.NodeKind.WAIT:
        return base
    return _with_spec(base, owner, version, node, how)


def _with_spec(base: p.PlanNode, owner: str, version: str, node: Node, how: _How) -> p.PlanNode:
    from dataclasses import replace  # noqa: PLC0415 - only constructs need it

    if base.kind is p.NodeKind.SLEEP:
        sleep = node.sleep_spec()
        until = None if sleep.until is None else sleep.until.timestamp()
        return replace(base, sleep=p.SleepSpec(seconds=sleep.seconds, until=until))
    if base.kind is p.NodeKind.SUBFLOW:
        sub = node.subflow_spec()
        spec = p.SubflowSpec(blueprint=sub.blueprint, input=sub.input, output=sub.output)
        return replace(base, subflow=spec)
    if base.kind is p.NodeKind.MAP:
        return replace(base, map=_map(owner, version, node, how))
    return replace(base, loop=_loop(owner, version, node, how))


def _map(owner: str, version: str, node: Node, how: _How) -> p.MapSpec:
    spec = node.map_spec()
    if spec.body is not None:
        body = _graph(f"{owner}/{node.id}", version, spec.body, how)
    else:
        assert spec.uses is not None
        item = p.PlanNode(id=node.id, uses=spec.uses, params=dict(node.params))
        body = p.build_plan(id=f"{owner}/{node.id}", version=version, nodes=[item], edges=[])
    return p.MapSpec(body=body, items=_expr(spec.items, how), concurrency=spec.concurrency)


def _loop(owner: str, version: str, node: Node, how: _How) -> p.LoopSpec:
    spec = node.loop_spec()
    if spec.body is not None:
        body = _graph(f"{owner}/{node.id}", version, spec.body, how)
    else:
        assert spec.blueprint is not None
        if how.resolve is None:
            raise LookupError(f"loop {node.id!r} names blueprint {spec.blueprint!r}: no registry")
        body = how.resolve(spec.blueprint)
    condition = _expr(spec.while_, how)
    return p.LoopSpec(body=body, condition=condition, max_iterations=spec.max_iterations)
