"""Typed accessors of the built-in kinds and the retry policy."""

from __future__ import annotations

import datetime as dt

import pytest
from flowcraft.core import LoopSpec, MapSpec, RetryPolicy, parse_blueprint

DOC = {
    "id": "c",
    "nodes": [
        {
            "id": "l",
            "uses": "flowcraft.loop",
            "params": {
                "while": "input < 3",
                "max_iterations": 10,
                "body": {"nodes": [{"id": "i", "uses": "inc"}]},
            },
        },
        {
            "id": "m",
            "uses": "flowcraft.map",
            "params": {"uses": "work", "concurrency": 3, "items": "input.xs"},
        },
        {"id": "w", "uses": "flowcraft.wait", "params": {"prompt": "approve?"}},
        {"id": "s", "uses": "flowcraft.sleep", "params": {"until": "2030-01-01T00:00:00+00:00"}},
        {
            "id": "sub",
            "uses": "flowcraft.subflow",
            "params": {"blueprint": "child", "input": {"a": "b"}},
        },
        {"id": "t", "uses": "task"},
    ],
}


def test_typed_accessors() -> None:
    bp = parse_blueprint(DOC)
    loop = bp.node("l").loop_spec()
    assert isinstance(loop, LoopSpec)
    assert (loop.while_, loop.max_iterations) == ("input < 3", 10)
    assert loop.body is not None
    assert loop.body.node("i").uses == "inc"
    work = bp.node("m").map_spec()
    assert isinstance(work, MapSpec)
    assert (work.uses, work.concurrency, work.items) == ("work", 3, "input.xs")
    assert bp.node("w").wait_spec().prompt == "approve?"
    assert bp.node("s").sleep_spec().until == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert bp.node("sub").subflow_spec().input == {"a": "b"}
    assert bp.node("t").spec is None
    assert bp.node("t").is_builtin is False


def test_accessor_of_another_kind_is_a_type_error() -> None:
    bp = parse_blueprint(DOC)
    with pytest.raises(TypeError, match=r"uses 'flowcraft\.map', not 'flowcraft\.loop'"):
        bp.node("m").loop_spec()
    with pytest.raises(TypeError):
        bp.node("t").wait_spec()


def test_unknown_node_lookup() -> None:
    with pytest.raises(KeyError, match="no node 'zz'"):
        parse_blueprint(DOC).node("zz")


def test_loop_params_round_trip_with_the_while_key() -> None:
    bp = parse_blueprint(DOC)
    assert bp.to_dict()["nodes"][0]["params"]["while"] == "input < 3"
    assert parse_blueprint(bp.to_dict()) == bp


@pytest.mark.parametrize(
    ("policy", "attempt", "expected"),
    [
        (RetryPolicy(max_attempts=3, delay=0.1, backoff=2), 2, 0.1),
        (RetryPolicy(max_attempts=3, delay=0.1, backoff=2), 3, 0.2),
        (RetryPolicy(delay=1, backoff=10, max_delay=5), 4, 5.0),
        (RetryPolicy(delay=2, backoff=1), 9, 2.0),
    ],
)
def test_retry_delays(policy: RetryPolicy, attempt: int, expected: float) -> None:
    assert policy.delay_before(attempt) == pytest.approx(expected)


def test_no_delay_before_the_first_attempt() -> None:
    with pytest.raises(ValueError, match="retries start at 2"):
        RetryPolicy().delay_before(1)
