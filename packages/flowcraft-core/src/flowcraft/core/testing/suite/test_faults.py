"""Faults every backend survives: duplicates, a killed worker, poison, late workers, load."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.ports import Message
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite.test_wait_resume import _until


def _diamond(blueprint_id: str) -> object:
    return bp(
        blueprint_id,
        [
            n("S", "write", writes={"s": 1}, value=1),
            n("A", "inc"),
            n("B", "inc"),
            n("J", "echo"),
            n("T", "inc", inputs="A"),
        ],
        [e("S", "A"), e("S", "B"), e("A", "J"), e("B", "J"), e("J", "T")],
    )


async def test_every_message_delivered_twice_changes_nothing(harness: Harness) -> None:
    async with harness.session(_diamond("dup"), duplicate=True) as s:  # type: ignore[arg-type]
        results = [await s.run("dup") for _ in range(3)]
    for result in results:
        assert result.status is RunStatus.COMPLETED
        assert result.outputs == {"S": 1, "A": 2, "B": 2, "J": {"A": 2, "B": 2}, "T": 3}
        assert result.context == {"s": 1}


async def test_worker_killed_mid_node_recovers(harness: Harness) -> None:
    """Killed in the middle of B: B's job comes back to another worker, without a reconciler.

    (Killed in the instant between the save that started B and the send of B's message, the
    run waits for the reconciler instead: ``test_reconciler_revives_lost_work_only``.)
    """
    blueprint = bp(
        "crash",
        [n("A", "const", value=1), n("B", "sleep", seconds=1.5), n("C", "inc", inputs="A")],
        [e("A", "B"), e("B", "C")],
    )
    async with harness.session(blueprint, workers=0, lease=2.0) as s:
        (victim,) = await s.start_workers(1)
        handle = await s.start("crash")
        while "B" not in LOG[handle.run_id]:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # mid-node: B sleeps 1.5 s
        await s.crash_worker(victim)
        await s.start_workers(1)
        result = await handle.result(timeout=30)
    assert result.status is RunStatus.COMPLETED
    assert result.output == 2
    assert LOG[handle.run_id].count("B") == 2  # the body ran again; the commit happened once


async def test_reconciler_revives_lost_work_only(harness: Harness) -> None:
    blueprint = bp(
        "lost",
        [n("A", "const", value=1), n("W", "flowcraft.wait"), n("B", "inc", inputs="A")],
        [e("A", "B"), e("A", "W")],
    )
    async with harness.session(blueprint, workers=0) as s:
        handle = await s.start("lost")
        first = (await s.start_workers(1))[0]
        while "A" not in LOG[handle.run_id]:
            await asyncio.sleep(0.02)
        await s.crash_worker(first)  # B's job may be lost with it (or sit in the queue)
        stats = await s.reconciler(stalled_after=0.0).run()
        assert stats.stalled_runs >= 1
        assert stats.failed_runs == 0
        await s.start_workers(1)
        await _until(s, handle.run_id, RunStatus.AWAITING)  # B done; W still waits
        await asyncio.sleep(0.5)
        assert await handle.status() is RunStatus.AWAITING  # W never "revived"
        await handle.resume("W", output="w")
        result = await handle.result(timeout=20)
    assert result.outputs["B"] == 2
    assert LOG[handle.run_id].count("A") == 1


@pytest.mark.flowcraft_requires("dead_letter")
async def test_poison_message_is_dead_lettered(harness: Harness) -> None:
    async with harness.session(_diamond("poison")) as s:  # type: ignore[arg-type]
        assert s.backend.inject is not None
        await s.backend.inject(Message(id="poison-1", body=b"\x00not a job"))
        result = await s.run("poison")
        for _ in range(100):
            dead = await s.backend.dead_letters()
            if dead:
                break
            await asyncio.sleep(0.05)
    assert result.status is RunStatus.COMPLETED
    assert [message_id for message_id, _reason in dead] == ["poison-1"]
    assert "undecodable" in dead[0][1]


async def test_worker_started_late_runs_queued_work(harness: Harness) -> None:
    async with harness.session(_diamond("late"), workers=0) as s:  # type: ignore[arg-type]
        handles = [await s.start("late") for _ in range(3)]
        await asyncio.sleep(0.2)
        assert {await h.status() for h in handles} == {RunStatus.RUNNING}
        await s.start_workers(2)
        results = [await h.result(timeout=20) for h in handles]
    assert {r.status for r in results} == {RunStatus.COMPLETED}


async def test_many_concurrent_runs(harness: Harness) -> None:
    async with harness.session(_diamond("many"), workers=4, concurrency=8) as s:  # type: ignore[arg-type]
        handles = await asyncio.gather(*(s.start("many") for _ in range(40)))
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert Counter(r.status for r in results) == Counter({RunStatus.COMPLETED: 40})
    assert {r.output for r in results} == {3}


async def test_large_context_values(harness: Harness) -> None:
    blueprint = bp("large", [n("L", "big", size=300_000), n("E", "echo")], [e("L", "E")])
    async with harness.session(blueprint) as s:
        result = await s.run("large")
    assert result.context["big"] == "x" * 300_000
    assert result.output == "x" * 300_000
