"""Bounded evaluations: cheap ones inline, costly ones stopped at the budget with a clear error."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from flowcraft.core import ExpressionError, FlowRuntime, compile_expression, parse_blueprint
from flowcraft.core._expressions._cost import Shape, estimate, inline_limit, measure

BIG = {"l": list(range(10_000)), "s": "x" * 1_000_000, "total": 5}
HOSTILE = [
    "input.l.all(x, input.l.all(y, x != -1))",
    "input.l.exists(x, input.l.exists(y, x == y + 100000))",
    "input.l.map(y, [y, y]).map(y, y + y).map(y, y + y).map(y, y + y).size() > 0",
    "input.l.map(y, string(y) + input.s).size() > 0",
    " + ".join(["input.s"] * 200) + " == ''",
    "['a'].map(s, s + s)" + ".map(s, s + s)" * 40 + " == []",
]
#: Generous: the budget (0.1 s) plus an evaluator start and a kill on a busy machine.
LATE = 5.0


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_evaluations_stop_at_the_budget(source: str) -> None:
    expression = compile_expression(source)
    began = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate({"input": BIG})
    assert time.monotonic() - began < LATE
    assert "budget of 0.1 s" in caught.value.reason or "stopped" in caught.value.reason
    assert caught.value.source == source[:200] + ("..." if len(source) > 200 else "")


def test_a_bigger_budget_lets_a_costly_evaluation_finish() -> None:
    expression = compile_expression("input.l.all(x, input.l.all(y, x != -1))")
    assert expression.with_budget(30).evaluate({"input": {"l": list(range(300))}}) is True


def test_evaluation_errors_keep_their_message_when_isolated() -> None:
    expression = compile_expression("input.l.all(x, x.missing == 1)")
    with pytest.raises(ExpressionError, match=r"no such key|missing"):
        expression.evaluate({"input": {"l": [{"a": i} for i in range(5_000)]}})


def test_isolated_results_are_plain_values() -> None:
    expression = compile_expression("input.l.map(x, x * 2).filter(x, x < 6)")
    assert expression.evaluate({"input": {"l": list(range(300))}}) == [0, 2, 4]
    assert (
        compile_expression("optional.of(input.l.size())").evaluate(
            {"input": {"l": list(range(5_000))}}
        )
        == 5_000
    )


def test_cheap_evaluations_stay_inline() -> None:
    expression = compile_expression("input.total > 100")
    assert measure([BIG], 10**9) <= expression._inline
    assert expression.evaluate({"input": BIG}) is False


def test_a_budget_must_be_positive_seconds() -> None:
    with pytest.raises(ValueError, match="budget"):
        compile_expression("1").with_budget(0)
    with pytest.raises(ValueError, match="budget"):
        FlowRuntime(expression_budget=-1)


def test_the_runtime_fails_the_node_and_stays_responsive() -> None:
    blueprint = parse_blueprint(
        {
            "id": "costly",
            "nodes": [{"id": "make", "uses": "make"}, {"id": "after", "uses": "after"}],
            "edges": [
                {
                    "source": "make",
                    "target": "after",
                    "condition": "result.l.all(x, result.l.all(y, x != -1))",
                }
            ],
        }
    )
    registry = {"make": lambda ctx: {"l": list(range(10_000))}, "after": lambda ctx: 1}

    async def main() -> tuple[str, str, float]:
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        result = await FlowRuntime(registry=registry).run(blueprint)
        ticker.cancel()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        return result.status.value, result.errors[0].message, max(gaps, default=0.0)

    status, message, gap = asyncio.run(main())
    assert status == "failed"
    assert "budget of 0.1 s" in message
    assert gap < LATE


def test_estimate_grows_with_data_and_nesting() -> None:
    flat = Shape(macros=0, macro_depth=0, refs=1, pluses=0, literals=0)
    nested = Shape(macros=2, macro_depth=2, refs=2, pluses=0, literals=0)
    assert estimate(flat, 10) < estimate(flat, 1_000) < estimate(nested, 1_000)
    assert inline_limit(nested, 0.1) < inline_limit(flat, 0.1)
    assert estimate(flat, inline_limit(flat, 0.1)) <= 0.1 / 1e-6
    assert estimate(flat, inline_limit(flat, 0.1) + 1) > 0.1 / 1e-6


def test_chained_concatenating_macros_are_never_inline() -> None:
    growth = Shape(macros=40, macro_depth=1, refs=0, pluses=40, literals=1)
    assert inline_limit(growth, 0.1) == -1


def test_measure_stops_soon_after_the_limit() -> None:
    assert measure([{"a": [1, 2, "xy"]}], 100) == 1 + 2 + 1 + 3 + 2
    huge = [list(range(1_000_000))]
    assert 100 < measure(huge, 100) <= 1_000_001
    assert measure(["x" * 10_240], 100) == 1 + 1 + 10
