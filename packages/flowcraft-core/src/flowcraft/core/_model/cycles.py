"""Cycle finding on plain adjacency maps (shared by validation and analysis)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence


def strongly_connected(
    nodes: Sequence[str], successors: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """Return the strongly connected components (Tarjan's algorithm, iterative).

    Components come in a deterministic order; each lists its nodes in ``nodes`` order.
    """
    order = {node: position for position, node in enumerate(nodes)}
    tarjan = _Tarjan(successors)
    for root in nodes:
        if root not in tarjan.index:
            tarjan.visit(root)
    ordered = [sorted(component, key=order.__getitem__) for component in tarjan.components]
    return sorted(ordered, key=lambda component: order[component[0]])


class _Tarjan:
    def __init__(self, successors: Mapping[str, Sequence[str]]) -> None:
        self.successors = successors
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.on_stack: set[str] = set()
        self.components: list[list[str]] = []

    def visit(self, root: str) -> None:
        work: list[tuple[str, Iterator[str]]] = [(root, self._enter(root))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                self._leave(node, work[-1][0] if work else None)
            elif child not in self.index:
                work.append((child, self._enter(child)))
            elif child in self.on_stack:
                self.low[node] = min(self.low[node], self.index[child])

    def _enter(self, node: str) -> Iterator[str]:
        self.index[node] = self.low[node] = len(self.index)
        self.stack.append(node)
        self.on_stack.add(node)
        return iter(self.successors.get(node, ()))

    def _leave(self, node: str, parent: str | None) -> None:
        if parent is not None:
            self.low[parent] = min(self.low[parent], self.low[node])
        if self.low[node] == self.index[node]:
            component: list[str] = []
            while not component or component[-1] != node:
                member = self.stack.pop()
                self.on_stack.discard(member)
                component.append(member)
            self.components.append(component)


def topological_order(
    nodes: Sequence[str], successors: Mapping[str, Sequence[str]]
) -> tuple[list[str], list[str]]:
    """Return ``(ordered, remaining)``: Kahn's order, and the nodes on or behind a cycle."""
    indegree = dict.fromkeys(nodes, 0)
    for node in nodes:
        for child in successors.get(node, ()):
            indegree[child] += 1
    ready = deque(node for node in nodes if indegree[node] == 0)
    ordered: list[str] = []
    while ready:
        node = ready.popleft()
        ordered.append(node)
        for child in successors.get(node, ()):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    done = set(ordered)
    return ordered, [node for node in nodes if node not in done]


def find_cycles(nodes: Sequence[str], successors: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Return one cycle per cyclic component, as a closed walk ``[a, b, ..., a]``."""
    _, remaining = topological_order(nodes, successors)
    if not remaining:
        return []
    keep = set(remaining)
    inner = {node: [c for c in successors.get(node, ()) if c in keep] for node in remaining}
    cycles: list[list[str]] = []
    for component in strongly_connected(remaining, inner):
        members = set(component)
        first = component[0]
        if len(component) > 1 or first in successors.get(first, ()):
            cycles.append(_walk(first, members, successors))
    return cycles


def _walk(start: str, members: set[str], successors: Mapping[str, Sequence[str]]) -> list[str]:
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = next(child for child in successors.get(node, ()) if child in members)
        if node in seen:
            return [*path[seen[node] :], node]
        seen[node] = len(path)
        path.append(node)
