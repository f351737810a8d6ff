"""Hostile expression sources never run code, never hang, and fail with ExpressionError."""

from __future__ import annotations

import time

import pytest
from flowcraft.core import ExpressionError, compile_expression
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCOPE = {"input": {"a": [1, 2, 3]}, "context": {}, "outputs": {}, "params": {}, "result": None}
BOUND_SECONDS = 2.0

FRAGMENTS = st.sampled_from(
    [
        "__import__('os')",
        "input.__class__",
        "input.__class__.__mro__",
        "().__class__.__bases__[0].__subclasses__()",
        "exec('1')",
        "eval('1')",
        "open('/etc/passwd')",
        "import os",
        "lambda: 1",
        "input.a.map(x, x)",
        "[1,2,3].map(x, [1,2,3].map(y, y))",
        "input['__dict__']",
        "getattr(input, 'a')",
        "size(input.a)",
        "'a' + 'b'",
        "1 / 0",
        "9223372036854775807 + 1",
        "input.a",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        " && ",
        " || ",
        "!",
        "-",
        "?",
        ":",
        ".",
    ]
)


def _outcome(source: str) -> object:
    try:
        return compile_expression(source).evaluate(SCOPE)
    except ExpressionError as exc:
        return exc


def _check(source: str) -> None:
    started = time.perf_counter()
    outcome = _outcome(source)
    assert time.perf_counter() - started < BOUND_SECONDS
    if isinstance(outcome, ExpressionError):
        assert outcome.reason
        assert len(str(outcome)) < 1000
    else:
        assert isinstance(outcome, str | int | float | bool | list | dict | type(None))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAGMENTS, max_size=12).map("".join))
def test_fragment_soup(source: str) -> None:
    _check(source)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text(source: str) -> None:
    _check(source)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=20_000), st.sampled_from("([{"))
def test_deep_nesting_fails_fast(depth: int, opener: str) -> None:
    closer = {"(": ")", "[": "]", "{": "}"}[opener]
    _check(opener * depth + "1" + closer * depth)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=4_001, max_value=2_000_000))
def test_huge_sources_are_refused_before_parsing(length: int) -> None:
    source = ("1 + " * (length // 4 + 1))[:length]
    with pytest.raises(ExpressionError, match="limit is 4000"):
        compile_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        "[" + ",".join(["0"] * 900) + "].map(x, [" + ",".join(["0"] * 900) + "].map(y, y))",
        "[1].map(a, [1].map(b, [1].map(c, c)))",
        "[" + ",".join(["0"] * 600) + "]",
    ],
)
def test_costly_comprehensions_are_refused(source: str) -> None:
    with pytest.raises(ExpressionError, match="limit"):
        compile_expression(source)


def test_no_python_attribute_walks() -> None:
    class Secret:
        token = "s3cret"

    with pytest.raises(ExpressionError):
        compile_expression("input.token").evaluate({"input": Secret()})
