"""Graph facts of a blueprint: start and terminal nodes, cycles, reachability, counts."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from flowcraft.core._model.cycles import find_cycles, topological_order
from flowcraft.core._model.graph import Blueprint, Graph, Node
from pydantic import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphFacts:
    """What the shape of one graph says (inline bodies are analysed on their own).

    Attributes:
        start_nodes: Nodes without incoming edges, fallback handlers excluded.
        terminal_nodes: Nodes without outgoing edges, fallback handlers excluded.
        fallback_nodes: Nodes named as some node's fallback.
        cycles: One closed walk per cyclic component (empty for a valid blueprint).
        is_dag: Whether the graph has no cycle.
        topological_order: The nodes in an order that respects every edge (empty if cyclic).
        reachable: Nodes reachable from a start node through edges and fallbacks.
        unreachable: Nodes that are not reachable, in document order.
        orphans: Nodes without any edge in a graph of several nodes (not fallback handlers).
        node_count: Nodes of this graph.
        edge_count: Edges of this graph.
        total_node_count: Nodes including those of inline bodies, at any depth.
        total_edge_count: Edges including those of inline bodies, at any depth.
    """

    start_nodes: tuple[str, ...]
    terminal_nodes: tuple[str, ...]
    fallback_nodes: tuple[str, ...]
    cycles: tuple[tuple[str, ...], ...]
    is_dag: bool
    topological_order: tuple[str, ...]
    reachable: frozenset[str]
    unreachable: tuple[str, ...]
    orphans: tuple[str, ...]
    node_count: int
    edge_count: int
    total_node_count: int
    total_edge_count: int

    def summary(self) -> dict[str, int]:
        """Return the counts as a mapping (for reports)."""
        return {
            "nodes": self.node_count,
            "edges": self.edge_count,
            "total_nodes": self.total_node_count,
            "total_edges": self.total_edge_count,
            "start_nodes": len(self.start_nodes),
            "terminal_nodes": len(self.terminal_nodes),
        }


def analyze(graph: Blueprint | Graph) -> GraphFacts:
    """Return the graph facts of a blueprint or an inline body."""
    ids = [node.id for node in graph.nodes]
    known = set(ids)
    successors = _successors(graph, known)
    has_incoming = {target for targets in successors.values() for target in targets}
    fallbacks = _fallbacks(graph.nodes, known)
    starts = tuple(n for n in ids if n not in has_incoming and n not in fallbacks)
    terminals = tuple(n for n in ids if not successors.get(n) and n not in fallbacks)
    ordered, remaining = topological_order(ids, successors)
    reachable = _reachable(starts, successors, graph.nodes)
    totals = _totals(graph)
    return GraphFacts(
        start_nodes=starts,
        terminal_nodes=terminals,
        fallback_nodes=tuple(n for n in ids if n in fallbacks),
        cycles=tuple(tuple(cycle) for cycle in find_cycles(ids, successors)),
        is_dag=not remaining,
        topological_order=tuple(ordered) if not remaining else (),
        reachable=frozenset(reachable),
        unreachable=tuple(n for n in ids if n not in reachable),
        orphans=_orphans(ids, successors, has_incoming, fallbacks),
        node_count=len(graph.nodes),
        edge_count=len(graph.edges),
        total_node_count=totals[0],
        total_edge_count=totals[1],
    )


def _successors(graph: Blueprint | Graph, known: set[str]) -> dict[str, list[str]]:
    successors: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.source in known and edge.target in known:
            successors.setdefault(edge.source, []).append(edge.target)
    return successors


def _fallbacks(nodes: tuple[Node, ...], known: set[str]) -> set[str]:
    handlers: set[str] = set()
    for node in nodes:
        fallback = node.config.fallback
        if fallback is not None and fallback in known:
            handlers.add(fallback)
    return handlers


def _reachable(
    starts: tuple[str, ...], successors: dict[str, list[str]], nodes: tuple[Node, ...]
) -> set[str]:
    fallback_of = {n.id: n.config.fallback for n in nodes if n.config.fallback is not None}
    seen = set(starts)
    queue = deque(starts)
    while queue:
        node = queue.popleft()
        following = [*successors.get(node, ()), *filter(None, [fallback_of.get(node)])]
        for child in following:
            if child not in seen:
                seen.add(child)
                queue.append(child)
    return seen


def _orphans(
    ids: list[str],
    successors: dict[str, list[str]],
    has_incoming: set[str],
    fallbacks: set[str],
) -> tuple[str, ...]:
    if len(ids) < 2:
        return ()
    return tuple(
        n for n in ids if n not in has_incoming and not successors.get(n) and n not in fallbacks
    )


def _totals(graph: Blueprint | Graph) -> tuple[int, int]:
    nodes, edges = len(graph.nodes), len(graph.edges)
    for body in iter_bodies(graph):
        inner = _totals(body)
        nodes, edges = nodes + inner[0], edges + inner[1]
    return nodes, edges


def iter_bodies(graph: Blueprint | Graph) -> Iterator[Graph]:
    """Yield the inline bodies of the graph's loop and map nodes (one level deep)."""
    for _, body in iter_bodies_with_index(graph):
        yield body


def iter_bodies_with_index(graph: Blueprint | Graph) -> Iterator[tuple[int, Graph]]:
    """Yield ``(node index, body)`` for the graph's inline bodies (one level deep)."""
    for index, node in enumerate(graph.nodes):
        try:
            spec = node.spec
        except ValidationError:  # only in graphs built without the loader
            continue
        body = getattr(spec, "body", None)
        if isinstance(body, Graph):
            yield index, body
