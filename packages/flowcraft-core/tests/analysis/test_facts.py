"""Graph facts: start/terminal nodes, fallbacks, cycles, reachability, counts."""

from __future__ import annotations

from flowcraft.core import Blueprint, analyze, parse_blueprint


def _bp() -> Blueprint:
    return parse_blueprint(
        {
            "id": "f",
            "nodes": [
                {"id": "s", "uses": "u", "config": {"fallback": "h"}},
                {"id": "h", "uses": "u"},
                {"id": "a", "uses": "u"},
                {"id": "b", "uses": "u"},
                {"id": "j", "uses": "u"},
                {"id": "lone", "uses": "u"},
                {
                    "id": "l",
                    "uses": "flowcraft.loop",
                    "params": {
                        "while": "true",
                        "max_iterations": 2,
                        "body": {
                            "nodes": [{"id": "x", "uses": "u"}, {"id": "y", "uses": "u"}],
                            "edges": [{"source": "x", "target": "y"}],
                        },
                    },
                },
            ],
            "edges": [
                {"source": "s", "target": "a"},
                {"source": "s", "target": "b"},
                {"source": "a", "target": "j"},
                {"source": "b", "target": "j"},
                {"source": "j", "target": "l"},
            ],
        }
    )


def test_fallback_handlers_are_neither_start_nor_terminal() -> None:
    facts = analyze(_bp())
    assert facts.start_nodes == ("s", "lone")
    assert facts.terminal_nodes == ("lone", "l")
    assert facts.fallback_nodes == ("h",)


def test_dag_order_reachability_orphans_and_counts() -> None:
    facts = analyze(_bp())
    assert facts.is_dag
    assert facts.cycles == ()
    order = facts.topological_order
    assert order.index("s") < order.index("a") < order.index("j") < order.index("l")
    assert facts.reachable == {"s", "h", "a", "b", "j", "lone", "l"}
    assert facts.unreachable == ()
    assert facts.orphans == ("lone",)
    assert facts.summary() == {
        "nodes": 7,
        "edges": 5,
        "total_nodes": 9,
        "total_edges": 6,
        "start_nodes": 2,
        "terminal_nodes": 2,
    }


def test_cycles_in_an_unvalidated_graph() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "b")]
    bp = Blueprint.model_validate(
        {
            "id": "c",
            "nodes": [{"id": n, "uses": "u"} for n in "abcd"],
            "edges": [{"source": s, "target": t} for s, t in edges],
        }
    )
    facts = analyze(bp)
    assert not facts.is_dag
    assert facts.cycles == (("b", "c", "b"),)
    assert facts.topological_order == ()
    assert facts.start_nodes == ("a", "d")
    assert facts.orphans == ("d",)


def test_nodes_behind_a_cycle_only_are_unreachable() -> None:
    edges = [("b", "c"), ("c", "b"), ("c", "d")]
    bp = Blueprint.model_validate(
        {
            "id": "c",
            "nodes": [{"id": n, "uses": "u"} for n in "abcd"],
            "edges": [{"source": s, "target": t} for s, t in edges],
        }
    )
    assert analyze(bp).unreachable == ("b", "c", "d")
