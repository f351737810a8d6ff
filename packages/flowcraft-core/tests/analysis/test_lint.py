"""Lint findings: codes, severities, paths."""

from __future__ import annotations

from typing import Any

from flowcraft.core import lint, parse_blueprint


def _codes(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(p.code, p.path, p.severity) for p in lint(parse_blueprint(doc))]


def _nodes(*ids: str, **configs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": i, "uses": "u", **({"config": configs[i]} if i in configs else {})} for i in ids]


def test_clean_blueprint_has_no_findings() -> None:
    doc = {"id": "x", "nodes": _nodes("a", "b"), "edges": [{"source": "a", "target": "b"}]}
    assert _codes(doc) == []


def test_orphan_node() -> None:
    doc = {"id": "x", "nodes": _nodes("a", "b", "c"), "edges": [{"source": "a", "target": "b"}]}
    assert ("FC501", "$.nodes[2]", "warning") in _codes(doc)


def test_fallback_with_incoming_edges() -> None:
    doc = {
        "id": "x",
        "nodes": _nodes("a", "h", a={"fallback": "h"}),
        "edges": [{"source": "a", "target": "h"}],
    }
    assert _codes(doc) == [("FC503", "$.nodes[1]", "warning")]


def test_constant_conditions() -> None:
    doc = {
        "id": "x",
        "nodes": _nodes("a", "b", "c"),
        "edges": [
            {"source": "a", "target": "b", "condition": "1 < 2"},
            {"source": "a", "target": "c", "condition": "false"},
        ],
    }
    found = lint(parse_blueprint(doc))
    assert [(p.code, p.path) for p in found if p.code == "FC504"] == [
        ("FC504", "$.edges[0].condition"),
        ("FC504", "$.edges[1].condition"),
    ]
    assert "never taken" in found[1].message


def test_join_any_without_effect_and_many_terminals() -> None:
    doc = {
        "id": "x",
        "nodes": _nodes("a", "b", "c", b={"join": "any"}),
        "edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "c"}],
    }
    assert _codes(doc) == [
        ("FC505", "$.nodes[1].config.join", "info"),
        ("FC506", "$", "info"),
    ]


def test_bodies_are_linted_with_nested_paths() -> None:
    body = {"nodes": _nodes("x", "y", "z"), "edges": [{"source": "x", "target": "y"}]}
    doc = {
        "id": "x",
        "nodes": [{"id": "m", "uses": "flowcraft.map", "params": {"body": body}}],
    }
    assert _codes(doc) == [("FC501", "$.nodes[0].params.body.nodes[2]", "warning")]
