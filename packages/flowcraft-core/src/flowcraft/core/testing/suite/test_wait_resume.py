"""Wait and resume (with actions, several waits, duplicates, errors), durable sleep."""

from __future__ import annotations

import asyncio
import time

import pytest
from flowcraft.core._distributed.client import Client
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.errors import ResumeError, RunNotFoundError
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n


async def _until(session: Session, run_id: str, status: RunStatus, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while await session.client.status(run_id) is not status:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never became {status}")
        await asyncio.sleep(0.05)


async def _token(session: Session, run_id: str, node_id: str, frame: str = "") -> str:
    """The resume token of an awaiting node instance, as the run's result tells it."""
    snapshot = await session.client.snapshot(run_id)
    (token,) = [a.token for a in snapshot.awaiting if (a.node_id, a.frame) == (node_id, frame)]
    assert token is not None
    return token


async def test_an_undeclared_action_is_refused_and_the_run_says_how_to_resume(
    harness: Harness,
) -> None:
    blueprint = bp(
        "review",
        [n("W", "flowcraft.wait"), n("OK", "echo"), n("NO", "echo")],
        [e("W", "OK", action="approve"), e("W", "NO", action="reject")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("review")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        (waiting,) = (await s.client.snapshot(handle.run_id)).awaiting
        assert (waiting.node_id, waiting.actions) == ("W", ("approve", "reject"))
        with pytest.raises(ResumeError, match=r"'maybe'.*approve, reject") as refused:
            await handle.resume("W", output="?", action="maybe")
        assert refused.value.code == "unknown-action"
        assert await handle.status() is RunStatus.AWAITING
        assert waiting.token is not None
        await s.client.resume(handle.run_id, token=waiting.token, output="yes", action="approve")
        result = await handle.result(timeout=20)
    assert (result.status, result.outputs) == (RunStatus.COMPLETED, {"W": "yes", "OK": "yes"})


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
    assert elapsed >= 1.0
    # Both slept at once on a single-slot worker: the second timer was set before the first
    # could fire (a worker held by the first sleep would set it a second later), and no next
    # node was sent before both were set. (A next node the worker runs ahead of its message
    # may never be sent: the order of the sends alone proves nothing then.)
    sent = [message_id for message_id, _delay in s.recording.sent]
    timers = [i for i, m in enumerate(sent) if ":TimerFired:Z" in m]
    assert len(timers) >= 2
    set_first, set_second = (s.recording.sent_at[i] for i in timers[:2])
    assert set_second - set_first < 1.0
    nexts = [i for i, m in enumerate(sent) if m.endswith(":T#1")]
    assert all(i > max(timers[:2]) for i in nexts)


async def test_resume_by_token_and_again_is_a_no_op(harness: Harness) -> None:
    blueprint = bp(
        "token",
        [n("S", "const", value=1), n("W", "flowcraft.wait"), n("OK", "echo"), n("NO", "echo")],
        [e("S", "W"), e("W", "OK", action="approve"), e("W", "NO", action="reject")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("token")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        token = await _token(s, handle.run_id, "W")
        with pytest.raises(RunNotFoundError):
            await handle.resume(token=f"{token}-nope", output="x")
        await handle.resume(token=token, output="first", action="approve")
        await handle.resume(token=token, output="second", action="reject")  # no-op
        result = await handle.result(timeout=20)
        await handle.resume(token=token, output="third", action="reject")  # still a no-op
        await handle.resume("W", output="fourth", action="reject")  # by id: the same
        after = await s.client.snapshot(handle.run_id)
    assert result.status is RunStatus.COMPLETED
    assert result.output == {"OK": "first"}
    assert after == result
    assert LOG[handle.run_id] == ["S", "OK"]


async def test_resume_by_token_reaches_a_wait_in_a_child_run(harness: Harness) -> None:
    child = bp("token-child", [n("CW", "flowcraft.wait"), n("CT", "echo")], [e("CW", "CT")])
    parent = bp(
        "token-parent",
        [n("SF", "flowcraft.subflow", blueprint="token-child"), n("T", "echo")],
        [e("SF", "T")],
    )
    async with harness.session(child, parent) as s:
        handle = await s.start("token-parent")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        token = await _token(s, f"{handle.run_id}:SF#1", "CW")
        await handle.resume(token=token, output="from-token")
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "from-token"


async def test_concurrent_resumes_take_effect_once(harness: Harness) -> None:
    blueprint = bp(
        "race",
        [n("S", "const", value=1), n("W", "flowcraft.wait"), n("T", "echo")],
        [e("S", "W"), e("W", "T")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("race")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        token = await _token(s, handle.run_id, "W")
        # Other clients stand for other processes: their resumes race through the store.
        others = [
            Client(queue=s.queue, store=s.backend.store, blueprints=s.blueprints) for _ in range(3)
        ]
        try:
            await asyncio.gather(
                *(s.client.resume(handle.run_id, "W", output=i) for i in range(3)),
                *(c.resume(handle.run_id, token=token, output=3 + i) for i, c in enumerate(others)),
            )
        finally:
            for other in others:
                await other.close()
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.outputs["W"] in range(6)
    assert result.output == result.outputs["W"]  # T saw the one resume that took effect
    assert LOG[handle.run_id] == ["S", "T"]  # T ran once
