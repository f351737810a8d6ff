"""Retries with backoff, timeouts, fallbacks, fail-fast, preserved errors, buffered context."""

from __future__ import annotations

import time

from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG, PHASES
from flowcraft.core.testing.suite._dsl import bp, e, n


async def test_retries_with_delays_then_success(harness: Harness) -> None:
    retry = {"retry": {"max_attempts": 3, "delay": 0.2, "backoff": 2}}
    blueprint = bp("retry", [n("F", "fail", times=2, config=retry)])
    async with harness.session(blueprint) as s:
        began = time.monotonic()
        handle = await s.start("retry")
        result = await handle.result(timeout=20)
        elapsed = time.monotonic() - began
    assert result.output == "ok"
    assert LOG[handle.run_id].count("F") == 3
    assert elapsed >= 0.6  # 0.2 s then 0.4 s, durable delays through the queue


async def test_failure_keeps_the_original_error(harness: Harness) -> None:
    retry = {"retry": {"max_attempts": 2, "delay": 0.05}}
    blueprint = bp("fails", [n("F", "fail", times=5, config=retry)])
    async with harness.session(blueprint) as s:
        result = await s.run("fails")
    assert result.status is RunStatus.FAILED
    (error,) = result.errors
    assert (error.node_id, error.attempt, error.type, error.message) == (
        "F",
        2,
        "RuntimeError",
        "boom",
    )


async def test_timeout_fails_the_attempt(harness: Harness) -> None:
    blueprint = bp("timeout", [n("T", "sleep", seconds=5, config={"timeout": 0.2})])
    async with harness.session(blueprint) as s:
        result = await s.run("timeout")
    assert result.status is RunStatus.FAILED
    assert result.errors[0].type == "TimeoutError"


async def test_timed_out_attempt_is_cancelled_and_the_retry_succeeds(harness: Harness) -> None:
    config = {"timeout": 0.3, "retry": {"max_attempts": 2, "delay": 0.05}}
    blueprint = bp(
        "timeout-retry",
        [n("O", "overrun", times=1, seconds=10, config=config), n("T", "echo")],
        [e("O", "T")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("timeout-retry")
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "ok"
    assert result.errors == ()
    # Attempt 1 was cancelled in its sleep (it never reached its end); attempt 2 ran to its end.
    assert PHASES[handle.run_id] == [
        (1, "started"),
        (1, "cancelled"),
        (2, "started"),
        (2, "finished"),
    ]


async def test_fallback_stands_in_and_routing_continues(harness: Harness) -> None:
    blueprint = bp(
        "fallback",
        [n("S", "fail", times=9, config={"fallback": "H"}), n("H", "echo"), n("T", "echo")],
        [e("S", "T")],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("fallback", "in")
    assert result.status is RunStatus.COMPLETED
    assert isinstance(result.output, dict)
    assert result.output["input"] == "in"
    assert result.output["error"]["message"] == "boom"


async def test_fail_fast_and_fallback_never_hides_another_failure(harness: Harness) -> None:
    blueprint = bp(
        "failfast",
        [
            n("S", "const", value=1),
            n("A", "fail", times=9, config={"fallback": "H"}),
            n("H", "const", value="h"),
            n("B", "fail", times=9, config={"retry": {"max_attempts": 2, "delay": 0.3}}),
            n("J", "echo"),
        ],
        [e("S", "A"), e("S", "B"), e("A", "J"), e("B", "J")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("failfast")
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.FAILED
    assert [err.node_id for err in result.errors] == ["B"]
    assert "J" not in LOG[handle.run_id]


async def test_failed_attempt_writes_nothing_to_the_context(harness: Harness) -> None:
    blueprint = bp(
        "buffered",
        [n("W", "write", writes={"j": 2}, fail_until=2, config={"retry": {"max_attempts": 2}})],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("buffered")
    assert result.context == {"j": 2}
