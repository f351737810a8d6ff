"""Each validation rule, with its stable code and JSON path."""

from __future__ import annotations

from typing import Any

import pytest
from flowcraft.core import validate_blueprint


def _doc(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": "t", "nodes": nodes, "edges": edges or []}


def _loop(**params: Any) -> dict[str, Any]:
    return {"id": "l", "uses": "flowcraft.loop", "params": params}


BODY = {"nodes": [{"id": "inc", "uses": "inc"}]}

CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("missing id", {"nodes": [{"id": "a", "uses": "u"}]}, [("FC003", "$.id")]),
    ("no nodes", {"id": "t", "nodes": []}, [("FC005", "$.nodes")]),
    ("no nodes at all", {"id": "t"}, [("FC005", "$.nodes")]),
    (
        "unknown top field",
        {"id": "t", "nodez": [], "nodes": [{"id": "a", "uses": "u"}]},
        [("FC004", "$.nodez")],
    ),
    ("empty node id", _doc([{"id": " ", "uses": "u"}]), [("FC101", "$.nodes[0].id")]),
    (
        "duplicate node id",
        _doc([{"id": "a", "uses": "u"}, {"id": "a", "uses": "u"}]),
        [("FC102", "$.nodes[1].id")],
    ),
    ("reserved uses", _doc([{"id": "a", "uses": "flowcraft.nap"}]), [("FC104", "$.nodes[0].uses")]),
    (
        "fallback unknown",
        _doc([{"id": "a", "uses": "u", "config": {"fallback": "b"}}]),
        [("FC105", "$.nodes[0].config.fallback")],
    ),
    (
        "fallback self",
        _doc([{"id": "a", "uses": "u", "config": {"fallback": "a"}}]),
        [("FC106", "$.nodes[0].config.fallback")],
    ),
    (
        "loop without max_iterations",
        _doc([_loop(body=BODY, **{"while": "input < 3"})]),
        [("FC107", "$.nodes[0].params.max_iterations")],
    ),
    (
        "loop with body and blueprint",
        _doc([_loop(body=BODY, blueprint="b", max_iterations=3, **{"while": "true"})]),
        [("FC108", "$.nodes[0].params")],
    ),
    (
        "loop while does not compile",
        _doc([_loop(body=BODY, max_iterations=3, **{"while": "input <"})]),
        [("FC301", "$.nodes[0].params.while")],
    ),
    (
        "map items does not compile",
        _doc([{"id": "m", "uses": "flowcraft.map", "params": {"uses": "u", "items": "x.y"}}]),
        [("FC301", "$.nodes[0].params.items")],
    ),
    (
        "sleep with both",
        _doc([{"id": "s", "uses": "flowcraft.sleep", "params": {"seconds": 1, "until": "x"}}]),
        [("FC005", "$.nodes[0].params.until")],
    ),
    (
        "subflow without blueprint",
        _doc([{"id": "s", "uses": "flowcraft.subflow"}]),
        [("FC003", "$.nodes[0].params.blueprint")],
    ),
    (
        "edge to unknown nodes",
        _doc([{"id": "a", "uses": "u"}], [{"source": "x", "target": "y"}]),
        [("FC201", "$.edges[0].source"), ("FC202", "$.edges[0].target")],
    ),
    (
        "duplicate edge",
        _doc(
            [{"id": "a", "uses": "u"}, {"id": "b", "uses": "u"}],
            [{"source": "a", "target": "b"}, {"source": "a", "target": "b", "condition": "true"}],
        ),
        [("FC203", "$.edges[1]")],
    ),
    (
        "transform does not compile",
        _doc(
            [{"id": "a", "uses": "u"}, {"id": "b", "uses": "u"}],
            [{"source": "a", "target": "b", "transform": "input.__class__("}],
        ),
        [("FC301", "$.edges[0].transform")],
    ),
    (
        "self loop",
        _doc([{"id": "a", "uses": "u"}], [{"source": "a", "target": "a"}]),
        [("FC401", "$.edges[0]")],
    ),
    (
        "bad inputs",
        _doc([{"id": "a", "uses": "u", "inputs": ["x"]}]),
        [("FC005", "$.nodes[0].inputs")],
    ),
    ("node not a mapping", {"id": "t", "nodes": ["a"]}, [("FC005", "$.nodes[0]")]),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(doc: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert [(p.code, p.path) for p in validate_blueprint(doc)] == expected


def test_cycle_names_its_nodes_and_the_loop_construct() -> None:
    nodes = [{"id": n, "uses": "u"} for n in "abc"]
    edges = [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}]
    edges.append({"source": "c", "target": "a"})
    (problem,) = validate_blueprint(_doc(nodes, edges))
    assert problem.code == "FC401"
    assert "a -> b -> c -> a" in problem.message
    assert "flowcraft.loop" in problem.message


def test_inline_bodies_are_validated_recursively_with_nested_paths() -> None:
    inner_map = {
        "id": "m",
        "uses": "flowcraft.map",
        "params": {"body": {"nodes": [{"id": "x", "uses": "zz"}, {"id": "x", "uses": "u"}]}},
    }
    body = {
        "nodes": [{"id": "b1", "uses": "u"}, inner_map],
        "edges": [{"source": "b1", "target": "b1"}, {"source": "b1", "target": "ghost"}],
    }
    doc = _doc([_loop(body=body, max_iterations=2, **{"while": "iteration < 2"})])
    found = [(p.code, p.path) for p in validate_blueprint(doc, registry={"u"})]
    base = "$.nodes[0].params.body"
    assert found == [
        ("FC401", f"{base}.edges[0]"),
        ("FC202", f"{base}.edges[1].target"),
        ("FC103", f"{base}.nodes[1].params.body.nodes[0].uses"),
        ("FC102", f"{base}.nodes[1].params.body.nodes[1].id"),
    ]


def test_bodies_deeper_than_the_limit() -> None:
    from flowcraft.core import Limits

    body: dict[str, Any] = {"nodes": [{"id": "leaf", "uses": "u"}]}
    for _ in range(3):
        body = {"nodes": [{"id": "m", "uses": "flowcraft.map", "params": {"body": body}}]}
    problems = validate_blueprint({"id": "t", **body}, limits=Limits(max_depth=2))
    assert [p.code for p in problems] == ["FC007"]


def test_a_bad_field_does_not_hide_edges_and_cycles_of_that_node() -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "a", "uses": "u", "config": {"timeout": -1}},
        {"id": "b", "uses": "u"},
    ]
    edges = [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}]
    codes = [p.code for p in validate_blueprint(_doc(nodes, edges))]
    assert codes == ["FC401", "FC005"]


def test_map_item_uses_is_checked_against_the_registry() -> None:
    doc = _doc([{"id": "m", "uses": "flowcraft.map", "params": {"uses": "nope"}}])
    problems = validate_blueprint(doc, registry={"u"})
    assert [(p.code, p.path) for p in problems] == [("FC103", "$.nodes[0].params.uses")]
