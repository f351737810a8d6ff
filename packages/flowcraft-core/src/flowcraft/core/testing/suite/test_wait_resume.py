"""Wait and resume (with actions, several waits, duplicates, errors), durable sleep."""

from __future__ import annotations

import asyncio
import time

import pytest
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.errors import ResumeError
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.suite._dsl import bp, e, n


async def _until(session: Session, run_id: str, status: RunStatus, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while await session.client.status(run_id) is not status:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never became {status}")
        await asyncio.sleep(0.05)


async def test_wait_with_action_duplicate_and_wrong_resume(harness: Harness) -> None:
    blueprint = bp(
        "approve",
        [n("S", "const", value=1), n("W", "flowcraft.wait"), n("OK", "echo"), n("NO", "echo")],
        [e("S", "W"), e("W", "OK", action="approve"), e("W", "NO", action="reject")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("approve")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.resume("W", output={"by": "ann"}, action="approve")
        await handle.resume("W", output={"by": "ann"}, action="approve")  # no-op
        with pytest.raises(ResumeError, match="'OK'"):
            await handle.resume("OK")
        result = await handle.result(timeout=20)
    assert result.output == {"OK": {"by": "ann"}}


async def test_two_waits(harness: Harness) -> None:
    blueprint = bp(
        "two-waits",
        [
            n("S", "const", value=1),
            n("W1", "flowcraft.wait"),
            n("W2", "flowcraft.wait"),
            n("J", "echo"),
        ],
        [e("S", "W1"), e("S", "W2"), e("W1", "J"), e("W2", "J")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("two-waits")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.resume("W1", output=1)
        await asyncio.sleep(0.3)
        assert await handle.status() is RunStatus.AWAITING
        await handle.resume("W2", output=2)
        result = await handle.result(timeout=20)
    assert result.output == {"W1": 1, "W2": 2}


@pytest.mark.flowcraft_requires("delayed_delivery")
async def test_sleep_is_durable_and_holds_no_worker(harness: Harness) -> None:
    blueprint = bp(
        "sleepy", [n("Z", "flowcraft.sleep", seconds=1.0), n("T", "echo")], [e("Z", "T")]
    )
    async with harness.session(blueprint, workers=1, concurrency=1) as s:
        began = time.monotonic()
        first = await s.start("sleepy", "a")
        second = await s.start("sleepy", "b")
        results = [await first.result(timeout=20), await second.result(timeout=20)]
        elapsed = time.monotonic() - began
    assert [r.output for r in results] == ["a", "b"]
    assert 1.0 <= elapsed < 1.9  # both slept at once on a single-slot worker
