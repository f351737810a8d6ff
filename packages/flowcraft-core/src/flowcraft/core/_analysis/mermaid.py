"""Mermaid flowcharts of blueprints, optionally coloured by the node states of a run.

The output is deterministic (document order, generated ids ``n0, n1 ...``), so it can be kept
in golden files and diffed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from flowcraft.core._analysis.facts import iter_bodies_with_index
from flowcraft.core._model.graph import Blueprint, Edge, Graph, Node
from flowcraft.core._model.kinds import LOOP, MAP, SLEEP, SUBFLOW, WAIT

Direction = Literal["TD", "LR", "BT", "RL"]

STATE_STYLES: Mapping[str, str] = {
    "pending": "fill:#f4f4f5,stroke:#a1a1aa,color:#27272a",
    "running": "fill:#dbeafe,stroke:#2563eb,color:#1e3a8a",
    "awaiting": "fill:#fef9c3,stroke:#ca8a04,color:#713f12",
    "succeeded": "fill:#dcfce7,stroke:#16a34a,color:#14532d",
    "failed": "fill:#fee2e2,stroke:#dc2626,color:#7f1d1d",
    "skipped": "fill:#f4f4f5,stroke:#a1a1aa,color:#71717a,stroke-dasharray:4 3",
    "cancelled": "fill:#ede9fe,stroke:#7c3aed,color:#4c1d95",
}
"""The ``classDef`` style of each node state, in the order the legend lists them."""

_SHAPES = {
    WAIT: ("{{", "}}"),
    SLEEP: ("([", "])"),
    SUBFLOW: ("[[", "]]"),
    MAP: ("[/", "/]"),
    LOOP: ("[\\", "\\]"),
}
_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;"}


def to_mermaid(
    blueprint: Blueprint | Graph,
    run_state: Mapping[str, str] | None = None,
    *,
    direction: Direction = "TD",
) -> str:
    """Render a blueprint as a Mermaid flowchart.

    Args:
        blueprint: The blueprint (inline bodies are drawn as subgraphs).
        run_state: Optional node id → state (``pending``, ``running``, ``awaiting``,
            ``succeeded``, ``failed``, ``skipped``, ``cancelled``); nodes are coloured by it.
        direction: Flow direction of the chart.

    Raises:
        ValueError: ``run_state`` names an unknown node or state.
    """
    ids = {node.id: f"n{index}" for index, node in enumerate(blueprint.nodes)}
    lines = [f"flowchart {direction}"]
    lines.extend(_graph_lines(blueprint, ids, "  "))
    if run_state is not None:
        lines.extend(_state_lines(run_state, ids))
    return "\n".join(lines) + "\n"


def _graph_lines(graph: Blueprint | Graph, ids: Mapping[str, str], indent: str) -> list[str]:
    lines = [f"{indent}{ids[node.id]}{_shape(node)}" for node in graph.nodes]
    lines.extend(f"{indent}{_edge(edge, ids)}" for edge in graph.edges if _known(edge, ids))
    for node in graph.nodes:
        fallback = node.config.fallback
        if fallback is not None and fallback in ids:
            lines.append(f'{indent}{ids[node.id]} -.->|"fallback"| {ids[fallback]}')
    for index, body in iter_bodies_with_index(graph):
        lines.extend(_body_lines(graph.nodes[index], body, ids, indent))
    return lines


def _body_lines(owner: Node, body: Graph, ids: Mapping[str, str], indent: str) -> list[str]:
    prefix = ids[owner.id]
    inner = {node.id: f"{prefix}_{index}" for index, node in enumerate(body.nodes)}
    title = _escape(f"{owner.id} body")
    lines = [f'{indent}subgraph {prefix}_body ["{title}"]']
    lines.extend(_graph_lines(body, inner, indent + "  "))
    lines.append(f"{indent}end")
    lines.append(f"{indent}{prefix} -.- {prefix}_body")
    return lines


def _shape(node: Node) -> str:
    opening, closing = _SHAPES.get(node.uses, ("[", "]"))
    return f'{opening}"{_escape(node.id)}<br/><small>{_escape(node.uses)}</small>"{closing}'


def _known(edge: Edge, ids: Mapping[str, str]) -> bool:
    return edge.source in ids and edge.target in ids


def _edge(edge: Edge, ids: Mapping[str, str]) -> str:
    label = _edge_label(edge)
    arrow = f'-->|"{_escape(label)}"|' if label else "-->"
    return f"{ids[edge.source]} {arrow} {ids[edge.target]}"


def _edge_label(edge: Edge) -> str:
    parts = [part for part in (edge.action, _if(edge.condition)) if part]
    return " ".join(parts)


def _if(condition: str | None) -> str | None:
    return None if condition is None else f"if {condition}"


def _escape(text: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in text)


def _state_lines(run_state: Mapping[str, str], ids: Mapping[str, str]) -> list[str]:
    unknown_nodes = sorted(set(run_state) - set(ids))
    if unknown_nodes:
        raise ValueError(f"run_state names nodes that are not in the blueprint: {unknown_nodes}")
    unknown_states = sorted(set(run_state.values()) - set(STATE_STYLES))
    if unknown_states:
        raise ValueError(f"unknown node states {unknown_states}; known: {list(STATE_STYLES)}")
    lines: list[str] = []
    for state, style in STATE_STYLES.items():
        members = [ids[node_id] for node_id in ids if run_state.get(node_id) == state]
        if members:
            lines.append(f"  classDef {state} {style}")
            lines.append(f"  class {','.join(members)} {state}")
    return lines
