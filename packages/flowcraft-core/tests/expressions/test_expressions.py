"""The expression evaluator: compile once, evaluate many, clear errors, plain results."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flowcraft.core import ExpressionError, compile_expression


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        ("input > 5", {"input": 7}, True),
        ("result.total * 2", {"result": {"total": 21}}, 42),
        (
            "context.tier == 'gold' && params.limit >= 3",
            {"context": {"tier": "gold"}, "params": {"limit": 3}},
            True,
        ),
        ("outputs.a + outputs.b", {"outputs": {"a": "x", "b": "y"}}, "xy"),
        ("iteration < 3", {"iteration": 2}, True),
        ("[1, 2, 3].map(x, x * 2)", {}, [2, 4, 6]),
        ("{'k': input}", {"input": [1, None]}, {"k": [1, None]}),
        ("has(input.x)", {"input": {}}, False),
        ("timestamp('2020-01-01T00:00:00Z')", {}, "2020-01-01T00:00:00+00:00"),
        ("duration('90s')", {}, 90.0),
        ("optional.of(1)", {}, 1),
    ],
)
def test_evaluates_to_plain_values(source: str, scope: dict[str, object], expected: object) -> None:
    assert compile_expression(source).evaluate(scope) == expected


@pytest.mark.parametrize(
    ("source", "scope", "reason"),
    [
        ("input.x", {"input": {}}, "no such key"),
        ("input > 5", {}, "input"),
        ("input + 'a'", {"input": 1}, "No such overload"),
        ("1 / input", {"input": 0}, "division by zero"),
        ("input", {"input": object()}, "Conversion"),
        ("b'x'", {}, "no plain form"),
    ],
)
def test_evaluation_errors_are_loud(source: str, scope: dict[str, object], reason: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source).evaluate(scope)
    assert reason in info.value.reason
    assert info.value.source == source


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("1 +", "syntax error at line 1, column 4"),
        ("inptu > 1", "unknown name 'inptu'"),
        ("", "empty"),
        ("import os", "reserved identifier"),
    ],
)
def test_compile_errors(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(source)


def test_comprehension_variables_are_not_scope_names() -> None:
    compiled = compile_expression("input.all(item, item > 0) && [1].exists(x, x == 1)")
    assert compiled.names == ("input",)
    assert compiled.evaluate({"input": [1, 2]}) is True


def test_compilation_is_cached_per_source() -> None:
    assert compile_expression("input == 1") is compile_expression("input == 1")


def test_constant_expressions_are_recognised() -> None:
    assert compile_expression("1 < 2").is_constant
    assert not compile_expression("input < 2").is_constant


def test_a_non_string_is_api_misuse() -> None:
    with pytest.raises(TypeError):
        compile_expression(5)  # type: ignore[arg-type]


def test_error_messages_stay_short_for_long_sources() -> None:
    source = "input." + "a" * 3000 + " +"
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert len(str(info.value)) < 600


def test_engine_loads_without_the_cel_cli_and_cel_still_imports() -> None:
    code = (
        "import sys; from flowcraft.core import compile_expression as c;"
        "assert c('1 + 1').evaluate({}) == 2;"
        "assert 'rich' not in sys.modules and 'cel.cli' not in sys.modules;"
        "import cel; assert cel.evaluate('2 * 3') == 6"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
