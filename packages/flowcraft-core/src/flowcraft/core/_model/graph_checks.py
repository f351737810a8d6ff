"""Rules that span a graph: ids, uses, fallbacks, edges, expressions, cycles, built-in kinds."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flowcraft.core._expressions import compile_expression
from flowcraft.core._model import problems as codes
from flowcraft.core._model.compat import TS_ONLY_USES
from flowcraft.core._model.constructs import SPEC_TYPES
from flowcraft.core._model.cycles import find_cycles
from flowcraft.core._model.graph import Blueprint, Edge, Graph, Node
from flowcraft.core._model.kinds import BUILTIN_KINDS, LOOP, MAP, RESERVED_PREFIX
from flowcraft.core._model.paths import join
from flowcraft.core._model.scope import Scope
from flowcraft.core._model.structural import salvage, validate_model
from flowcraft.core.errors import ExpressionError

BodyCheck = Callable[[object, str, Scope, int], None]
"""Checks an inline body: ``(raw body, path, scope, depth)``."""

_TS_HINTS = {
    "loop-controller": (codes.TS_LOOP, "express the loop with a `flowcraft.loop` node"),
    "batch-scatter": (codes.TS_UNSUPPORTED, "express the batch with a `flowcraft.map` node"),
    "batch-gather": (codes.TS_UNSUPPORTED, "express the batch with a `flowcraft.map` node"),
}
_LOOP_ADVICE = (
    "blueprints must be acyclic at every level; repeat work with a `flowcraft.loop` node "
    "(an inline `body`, a `while` expression and `max_iterations`)"
)


@dataclass(frozen=True, slots=True)
class GraphItems:
    """The valid nodes and edges of a graph, each with its index in the document.

    ``ids`` holds the id of every node entry that has a string id, valid or not, so that one
    bad field in a node does not turn every edge to it into a second problem.
    """

    ids: list[tuple[int, str]]
    nodes: list[tuple[int, Node]]
    edges: list[tuple[int, Edge]]

    @classmethod
    def of(cls, model: Blueprint | Graph | None, raw: Mapping[str, Any]) -> GraphItems:
        """Take the items of a valid model, or salvage the valid items of a raw graph."""
        if model is not None:
            ids = [(index, node.id) for index, node in enumerate(model.nodes)]
            return cls(ids, list(enumerate(model.nodes)), list(enumerate(model.edges)))
        nodes = raw.get("nodes")
        ids = [
            (index, node["id"])
            for index, node in enumerate(nodes if isinstance(nodes, list) else ())
            if isinstance(node, Mapping) and isinstance(node.get("id"), str)
        ]
        return cls(ids, salvage(Node, nodes), salvage(Edge, raw.get("edges")))


def check_graph(
    items: GraphItems, base: str, scope: Scope, depth: int, *, check_body: BodyCheck
) -> None:
    """Check one graph (the root or an inline body), recording every problem in ``scope``."""
    ids = _check_ids(items.ids, base, scope)
    for index, node in items.nodes:
        path = f"{base}.nodes[{index}]"
        _check_uses(node.uses, f"{path}.uses", scope)
        if node.config.fallback is not None:
            _check_fallback(node, f"{path}.config.fallback", ids, scope)
        if node.uses in SPEC_TYPES:
            _check_construct(node, path, scope, depth, check_body)
    _check_edges(items.edges, base, ids, scope)
    _check_cycles(items, base, ids, scope)


def _check_ids(ids: list[tuple[int, str]], base: str, scope: Scope) -> dict[str, int]:
    first: dict[str, int] = {}
    for index, node_id in ids:
        path = f"{base}.nodes[{index}].id"
        if not node_id.strip():
            scope.add(codes.EMPTY_NODE_ID.problem(path, "a node id must not be empty"))
        elif node_id in first:
            where = join(base, "nodes", first[node_id])
            message = f"node id {node_id!r} is already used by {where}"
            scope.add(codes.DUPLICATE_NODE_ID.problem(path, message))
        else:
            first[node_id] = index
    return first


def _check_uses(uses: str, path: str, scope: Scope) -> None:
    if uses in BUILTIN_KINDS:
        return
    if uses.startswith(RESERVED_PREFIX):
        known = ", ".join(sorted(BUILTIN_KINDS))
        message = f"{uses!r} is not a built-in kind (built-ins: {known})"
        scope.add(codes.UNKNOWN_BUILTIN.problem(path, message))
    elif scope.dialect == "typescript" and uses in TS_ONLY_USES:
        code, advice = _TS_HINTS[uses]
        scope.add(code.problem(path, f"TypeScript `{uses}` nodes are not supported; {advice}"))
    elif scope.registry is not None and uses not in scope.registry:
        message = f"{uses!r} is not in the registry{_suggest(uses, scope.registry)}"
        scope.add(codes.UNKNOWN_USES.problem(path, message))


def _suggest(name: str, known: object) -> str:
    if not isinstance(known, Iterable):
        return ""
    close = difflib.get_close_matches(name, [str(key) for key in known], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_fallback(node: Node, path: str, ids: Mapping[str, int], scope: Scope) -> None:
    fallback = node.config.fallback
    if fallback is None:
        return
    if fallback == node.id:
        scope.add(codes.FALLBACK_SELF.problem(path, f"node {node.id!r} is its own fallback"))
    elif fallback not in ids:
        message = f"fallback {fallback!r} is not a node of this graph{_suggest(fallback, ids)}"
        scope.add(codes.FALLBACK_UNKNOWN.problem(path, message))


def _check_construct(
    node: Node, path: str, scope: Scope, depth: int, check_body: BodyCheck
) -> None:
    spec_type = SPEC_TYPES.get(node.uses)
    if spec_type is None:
        return
    params_path = join(path, "params")
    params = dict(node.params)
    body = params.pop("body", None)
    if body is not None:
        params["body"] = {}
    validate_model(spec_type, params, params_path, scope, construct=True)
    if body is not None:
        check_body(body, join(params_path, "body"), scope, depth + 1)
    _check_construct_fields(node, params_path, scope)


def _check_construct_fields(node: Node, params_path: str, scope: Scope) -> None:
    params = node.params
    key = "while" if node.uses == LOOP else "items" if node.uses == MAP else None
    if key is not None and isinstance(params.get(key), str):
        check_expression(str(params[key]), join(params_path, key), scope)
    item_uses = params.get("uses")
    if node.uses == MAP and isinstance(item_uses, str):
        _check_uses(item_uses, join(params_path, "uses"), scope)


def check_expression(source: str, path: str, scope: Scope) -> None:
    """Record a problem if ``source`` does not compile (each distinct source compiles once)."""
    try:
        compile_expression(source)
    except ExpressionError as exc:
        scope.add(codes.BAD_EXPRESSION.problem(path, exc.reason))


def _check_edges(
    edges: list[tuple[int, Edge]], base: str, ids: Mapping[str, int], scope: Scope
) -> None:
    seen: dict[tuple[str, str, str | None], int] = {}
    for index, edge in edges:
        path = f"{base}.edges[{index}]"
        if edge.source not in ids:
            _unknown_endpoint(edge.source, f"{path}.source", ids, scope, codes.EDGE_UNKNOWN_SOURCE)
        if edge.target not in ids:
            _unknown_endpoint(edge.target, f"{path}.target", ids, scope, codes.EDGE_UNKNOWN_TARGET)
        if edge.key in seen:
            where = join(base, "edges", seen[edge.key])
            message = f"same source, target and action as {where}"
            scope.add(codes.DUPLICATE_EDGE.problem(path, message))
        seen.setdefault(edge.key, index)
        if edge.condition is not None:
            check_expression(edge.condition, f"{path}.condition", scope)
        if edge.transform is not None:
            check_expression(edge.transform, f"{path}.transform", scope)


def _unknown_endpoint(
    node_id: str, path: str, ids: Mapping[str, int], scope: Scope, code: codes.Code
) -> None:
    message = f"no node {node_id!r} in this graph{_suggest(node_id, ids)}"
    scope.add(code.problem(path, message))


def _check_cycles(items: GraphItems, base: str, ids: Mapping[str, int], scope: Scope) -> None:
    successors: dict[str, list[str]] = {}
    closing: dict[tuple[str, str], int] = {}
    for index, edge in items.edges:
        if edge.source in ids and edge.target in ids:
            successors.setdefault(edge.source, []).append(edge.target)
            closing.setdefault((edge.source, edge.target), index)
    uses = {node.id: node.uses for _, node in items.nodes}
    for cycle in find_cycles(list(ids), successors):
        path = join(base, "edges", closing[(cycle[-2], cycle[-1])])
        ts_loop = any(uses.get(n) == "loop-controller" for n in cycle) or (
            base == "$" and scope.ts_loops_declared
        )
        code = codes.TS_LOOP if ts_loop else codes.CYCLE
        kind = "a TypeScript-style loop forms the cycle" if ts_loop else "the nodes form a cycle"
        scope.add(code.problem(path, f"{kind} {' -> '.join(cycle)}; {_LOOP_ADVICE}"))
