"""Subflows, map, loop, cancellation, idempotent start."""

from __future__ import annotations

import asyncio

from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite.test_wait_resume import _until


async def test_subflow_awaits_with_its_child_and_resumes(harness: Harness) -> None:
    child = bp("child", [n("CW", "flowcraft.wait"), n("CT", "echo")], [e("CW", "CT")])
    parent = bp(
        "parent", [n("SF", "flowcraft.subflow", blueprint="child"), n("T", "echo")], [e("SF", "T")]
    )
    async with harness.session(child, parent) as s:
        handle = await s.start("parent", "x")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.resume("SF", output="approved")  # forwarded to the child's wait
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "approved"


async def test_cancelling_the_parent_cancels_the_child(harness: Harness) -> None:
    child = bp("child2", [n("CW", "flowcraft.wait")])
    parent = bp("parent2", [n("SF", "flowcraft.subflow", blueprint="child2")])
    async with harness.session(child, parent) as s:
        handle = await s.start("parent2")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.cancel()
        result = await handle.result(timeout=20)
        child_id = f"{handle.run_id}:SF#1"
        await _until(s, child_id, RunStatus.CANCELLED)
    assert result.status is RunStatus.CANCELLED


async def test_map_keeps_item_order(harness: Harness) -> None:
    blueprint = bp("map", [n("M", "flowcraft.map", uses="suite.scaled", concurrency=3)])
    async with harness.session(blueprint, workers=2, concurrency=4) as s:
        result = await s.run("map", [3, 1, 2])
    assert result.output == [30, 10, 20]


async def test_loop_iterates_in_frames(harness: Harness) -> None:
    body = {"nodes": [{"id": "inc", "uses": "suite.inc"}]}
    params = {"while": "input < 3", "max_iterations": 10, "body": body}
    blueprint = bp("loop", [{"id": "L", "uses": "flowcraft.loop", "params": params}])
    async with harness.session(blueprint) as s:
        handle = await s.start("loop", 0)
        result = await handle.result(timeout=20)
    assert result.output == 3
    assert LOG[handle.run_id] == ["inc", "inc", "inc"]


async def test_cancellation_keeps_committed_work(harness: Harness) -> None:
    blueprint = bp(
        "cancel",
        [n("A", "write", writes={"a": 1}, value=1), n("B", "sleep", seconds=30)],
        [e("A", "B")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("cancel")
        while "B" not in LOG[handle.run_id]:
            await asyncio.sleep(0.05)
        await handle.cancel()
        await handle.cancel()
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.CANCELLED
    assert result.context == {"a": 1}
    assert result.outputs == {"A": 1}


async def test_idempotent_start(harness: Harness) -> None:
    blueprint = bp("idem", [n("A", "const", value=1), n("B", "echo")], [e("A", "B")])
    async with harness.session(blueprint) as s:
        first = await s.client.start("idem", idempotency_key="k")
        second = await s.client.start("idem", idempotency_key="k")
        await first.result(timeout=20)
    assert first.run_id == second.run_id
    assert LOG[first.run_id] == ["A", "B"]
