"""Lint: findings about valid blueprints that are likely mistakes (codes FC5xx)."""

from __future__ import annotations

from collections import Counter

from flowcraft.core._analysis.facts import analyze, iter_bodies_with_index
from flowcraft.core._expressions import compile_expression
from flowcraft.core._model import problems as codes
from flowcraft.core._model.graph import Blueprint, Graph
from flowcraft.core._model.paths import join
from flowcraft.core.errors import ExpressionError, Problem


def lint(blueprint: Blueprint | Graph) -> tuple[Problem, ...]:
    """Return the lint findings of a blueprint (warnings and infos), inline bodies included.

    Lint assumes a valid blueprint (see ``parse_blueprint``); it does not repeat validation.
    """
    findings: list[Problem] = []
    _lint_graph(blueprint, "$", findings)
    if isinstance(blueprint, Blueprint):
        terminals = analyze(blueprint).terminal_nodes
        if len(terminals) > 1:
            names = ", ".join(terminals)
            message = (
                f"{len(terminals)} terminal nodes ({names}); the run output maps each to its output"
            )
            findings.append(codes.MANY_TERMINALS.problem("$", message))
    return tuple(findings)


def _lint_graph(graph: Blueprint | Graph, base: str, findings: list[Problem]) -> None:
    facts = analyze(graph)
    index_of = {node.id: index for index, node in enumerate(graph.nodes)}
    incoming = Counter(edge.target for edge in graph.edges)
    for node_id in facts.orphans:
        path = join(base, "nodes", index_of[node_id])
        findings.append(codes.ORPHAN.problem(path, f"node {node_id!r} has no edges"))
    for node_id in facts.unreachable:
        if node_id not in facts.orphans:
            path = join(base, "nodes", index_of[node_id])
            findings.append(codes.UNREACHABLE.problem(path, f"no start node leads to {node_id!r}"))
    for node_id in facts.fallback_nodes:
        if incoming[node_id]:
            path = join(base, "nodes", index_of[node_id])
            message = f"fallback handler {node_id!r} has incoming edges, so it also runs as a node"
            findings.append(codes.FALLBACK_WITH_EDGES.problem(path, message))
    _lint_joins(graph, base, incoming, findings)
    _lint_conditions(graph, base, findings)
    for index, body in iter_bodies_with_index(graph):
        _lint_graph(body, join(base, "nodes", index, "params", "body"), findings)


def _lint_joins(
    graph: Blueprint | Graph, base: str, incoming: Counter[str], findings: list[Problem]
) -> None:
    for index, node in enumerate(graph.nodes):
        if node.config.join == "any" and incoming[node.id] < 2:
            path = join(base, "nodes", index, "config", "join")
            count = incoming[node.id]
            message = f"`join: any` has no effect on {node.id!r} with {count} incoming edge(s)"
            findings.append(codes.JOIN_NO_EFFECT.problem(path, message))


def _lint_conditions(graph: Blueprint | Graph, base: str, findings: list[Problem]) -> None:
    for index, edge in enumerate(graph.edges):
        if edge.condition is None:
            continue
        value = _constant_value(edge.condition)
        if isinstance(value, bool):
            effect = "always taken; drop the condition" if value else "never taken"
            path = join(base, "edges", index, "condition")
            message = f"the condition is always {str(value).lower()}: the edge is {effect}"
            findings.append(codes.CONSTANT_CONDITION.problem(path, message))


def _constant_value(source: str) -> object:
    try:
        compiled = compile_expression(source)
        return compiled.evaluate({}) if compiled.is_constant else None
    except ExpressionError:
        return None
