"""Linear runs, joins, dead-path elimination, actions, conditions, transforms."""

from __future__ import annotations

from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n


async def test_linear_chain_passes_outputs_and_context(harness: Harness) -> None:
    blueprint = bp(
        "linear",
        [n("a", "write", writes={"k": "v"}, value=1), n("b", "inc"), n("c", "inc")],
        [e("a", "b"), e("b", "c")],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("linear")
    assert result.status is RunStatus.COMPLETED
    assert result.output == 3
    assert result.outputs == {"a": 1, "b": 2, "c": 3}
    assert result.context == {"k": "v"}


async def test_dead_path_elimination_through_all_join(harness: Harness) -> None:
    blueprint = bp(
        "dpe",
        [n("S", "const", value=1), n("P", "echo"), n("Q", "const", value="q"), n("J", "echo")],
        [e("S", "P", condition="input > 5"), e("S", "Q"), e("P", "J"), e("Q", "J")],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("dpe", 1)
    assert result.status is RunStatus.COMPLETED
    assert "P" not in result.outputs
    assert result.output == {"Q": "q"}


async def test_everything_pruned_completes_with_null_output(harness: Harness) -> None:
    blueprint = bp(
        "pruned",
        [n("S", "const", value=1), n("P", "echo"), n("T", "echo")],
        [e("S", "P", condition="false"), e("P", "T")],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("pruned")
    assert result.status is RunStatus.COMPLETED
    assert result.output is None


async def test_any_join_fires_once(harness: Harness) -> None:
    blueprint = bp(
        "any",
        [
            n("S", "const", value=1),
            n("A", "const", value="a"),
            n("B", "const", value="b"),
            n("C", "const", value="c"),
            n("J", "echo", config={"join": "any"}),
        ],
        [e("S", "A"), e("S", "B"), e("S", "C"), e("A", "J"), e("B", "J"), e("C", "J")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("any")
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert isinstance(result.output, dict)
    assert len(result.output) == 1
    assert LOG[handle.run_id].count("J") == 1


async def test_action_routing_and_defaults(harness: Harness) -> None:
    def routing(action: str) -> object:
        return bp(
            f"route-{action}",
            [
                n("S", "act", action=action),
                n("Y", "const", value="Y"),
                n("N", "const", value="N"),
                n("D", "const", value="D"),
            ],
            [e("S", "Y", action="yes"), e("S", "N", action="no"), e("S", "D")],
        )

    async with harness.session(routing("no"), routing("maybe")) as s:  # type: ignore[arg-type]
        taken = await s.run("route-no")
        fallback = await s.run("route-maybe")
    assert taken.output == {"N": "N"}
    assert fallback.output == {"D": "D"}


async def test_transform_and_condition_on_result(harness: Harness) -> None:
    blueprint = bp(
        "transform",
        [
            n("S", "const", value={"total": 120, "items": [1, 2, 3]}),
            n("big", "echo"),
            n("small", "echo"),
        ],
        [
            e("S", "big", condition="result.total > 100", transform="{'n': size(result.items)}"),
            e("S", "small", condition="result.total <= 100"),
        ],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("transform")
    assert result.output == {"big": {"n": 3}}
