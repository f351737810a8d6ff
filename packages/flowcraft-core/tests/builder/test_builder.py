"""The fluent builder and the @node decorator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from flowcraft.core import BlueprintError, Flow, RetryPolicy, node, parse_blueprint
from flowcraft.core._builder import uses_key


@node
def fetch(order: Any) -> Any:
    return order


@node("orders.charge")
def charge(order: Any) -> Any:
    return order


@node
class Refund:
    def __call__(self, order: Any) -> Any:
        return order


def inc(value: int) -> int:
    return value + 1


def test_builder_produces_the_same_model_as_a_document() -> None:
    built = (
        Flow("orders", version="2")
        .node("fetch", fetch, retry=3, inputs={"id": "order_id"})
        .node("charge", charge, timeout=30, fallback="refund", join="any")
        .node("refund", Refund)
        .edge("fetch", "charge", action="ok", condition="input.total > 0", transform="input")
        .build()
    )
    document = {
        "id": "orders",
        "version": "2",
        "nodes": [
            {
                "id": "fetch",
                "uses": f"{__name__}.fetch",
                "inputs": {"id": "order_id"},
                "config": {"retry": {"max_attempts": 3}},
            },
            {
                "id": "charge",
                "uses": "orders.charge",
                "config": {"timeout": 30, "fallback": "refund", "join": "any"},
            },
            {"id": "refund", "uses": f"{__name__}.Refund"},
        ],
        "edges": [
            {
                "source": "fetch",
                "target": "charge",
                "action": "ok",
                "condition": "input.total > 0",
                "transform": "input",
            }
        ],
    }
    assert built == parse_blueprint(document)


def test_constructs() -> None:
    body = Flow("body").node("inc", inc)
    flow = (
        Flow("c")
        .loop("l", body, while_="input < 3", max_iterations=10)
        .loop("l2", "child-blueprint", while_="iteration < 2", max_iterations=2)
        .map("m", fetch, items="input.xs", concurrency=4)
        .map("mb", Flow("each").node("i", inc))
        .wait("w", prompt="ok?")
        .sleep("s", seconds=1.5)
        .sleep("s2", until="2030-01-01T00:00:00Z")
        .subflow("sub", "child", input={"a": "b"}, output="r", retry=RetryPolicy(max_attempts=2))
    )
    bp = flow.build()
    loop = bp.node("l").loop_spec()
    assert loop.body is not None
    assert loop.body.node("inc").uses == f"{__name__}.inc"
    assert bp.node("l2").loop_spec().blueprint == "child-blueprint"
    assert bp.node("m").map_spec().uses == f"{__name__}.fetch"
    assert bp.node("mb").map_spec().body is not None
    assert bp.node("w").wait_spec().prompt == "ok?"
    assert bp.node("s").sleep_spec().seconds == 1.5
    assert bp.node("sub").config.retry.max_attempts == 2
    assert set(flow.registry()) == {f"{__name__}.inc", f"{__name__}.fetch"}


def test_build_validates_with_the_same_rules() -> None:
    flow = Flow("bad").node("a", "u").node("a", "u").edge("a", "ghost")
    with pytest.raises(BlueprintError) as info:
        flow.build()
    assert [p.code for p in info.value.problems] == ["FC202", "FC102"]


def test_build_checks_uses_against_a_registry_plus_own_callables() -> None:
    flow = Flow("r").node("a", fetch).node("b", "known").node("c", "unknown")
    with pytest.raises(BlueprintError) as info:
        flow.build(registry={"known"})
    assert [(p.code, p.path) for p in info.value.problems] == [("FC103", "$.nodes[2].uses")]


def test_unstable_names_need_an_explicit_key() -> None:
    def local() -> None:
        return None

    with pytest.raises(ValueError, match="no stable qualified name"):
        Flow("x").node("a", lambda: None)
    with pytest.raises(ValueError, match="@node"):
        node(local)
    assert uses_key(node("my.key")(local)) == "my.key"


def test_uses_keys_are_identical_across_processes(tmp_path: Path) -> None:
    module = tmp_path / "stable_nodes.py"
    module.write_text(
        textwrap.dedent(
            """
            from flowcraft.core import Flow, node

            @node
            def step(x):
                return x

            class Steps:
                @staticmethod
                def other(x):
                    return x

            def keys():
                flow = Flow("s").node("a", step).node("b", Steps.other)
                return ",".join(n.uses for n in flow.build().nodes)
            """
        )
    )
    code = "import stable_nodes; print(stable_nodes.keys())"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(tmp_path), "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert runs == {"stable_nodes.step,stable_nodes.Steps.other"}


def test_keys_of_a_script_run_as_main_match_those_of_an_import(tmp_path: Path) -> None:
    """``python app.py``, ``python -m app`` and a worker's ``import app`` agree on the keys."""
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            from flowcraft.core import Flow, node

            @node
            def fetch(x):
                return x

            def keys():
                return Flow("s").node("a", fetch).build().nodes[0].uses

            if __name__ == "__main__":
                print(keys())
            """
        )
    )

    def key(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    assert key("app.py") == "app.fetch"
    assert key("-m", "app") == "app.fetch"
    assert key("-c", "import app; print(app.keys())") == "app.fetch"
