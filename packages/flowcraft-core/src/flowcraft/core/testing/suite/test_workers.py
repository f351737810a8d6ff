"""Workers: blueprint version pinning across worker releases, graceful stop (SIGTERM drain)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG, RELEASED, TICKETS
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually


def _left_the_job(caplog: pytest.LogCaptureFixture, worker: Worker) -> bool:
    """Whether ``worker`` logged that it left a job for a worker with the pinned version."""
    return any(
        record.name == "flowcraft.worker" and worker.id in (message := record.getMessage())
        and "leaving" in message and "version '1'" in message
        for record in caplog.records
    )  # fmt: skip


async def test_worker_without_the_pinned_version_leaves_the_job_to_one_with_it(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = bp("pinned", [n("A", "const", value="v1"), n("B", "echo")], [e("A", "B")])
    v2 = bp(
        "pinned", [n("A", "const", value="v2"), n("B", "const", value="v2")], [e("A", "B")],
        version="2",
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="flowcraft.worker")
    async with harness.session(v1, workers=0, version_retry=0.1, max_deliveries=1000) as s:
        (newer,) = await s.start_workers(1, blueprints=[v2])  # a release that knows only v2
        handle = await s.start("pinned")  # pinned to version 1 by the client
        await eventually(lambda: _left_the_job(caplog, newer), "the v2 worker left the job")
        assert await handle.status() is RunStatus.RUNNING
        assert LOG[handle.run_id] == []  # not run with the wrong plan
        await s.start_workers(1)  # knows version 1 (the session's blueprints)
        result = await handle.result(timeout=30)
        dead = await s.backend.dead_letters()
    assert result.status is RunStatus.COMPLETED
    assert result.outputs == {"A": "v1", "B": "v1"}  # version 1's behaviour
    assert LOG[handle.run_id] == ["A", "B"]
    assert dead == []


async def test_stopping_worker_finishes_its_node_and_starts_nothing_new(harness: Harness) -> None:
    blueprint = bp("drain", [n("A", "ticket", seconds=1.0), n("B", "echo")], [e("A", "B")])
    async with harness.session(blueprint, workers=0) as s:
        (draining,) = await s.start_workers(1)
        handle = await s.start("drain")
        await eventually(lambda: "A" in LOG[handle.run_id], "A started")
        draining.stopping.set()  # what the SIGTERM handler sets, while A runs
        await s.stop_worker(draining)  # returns once the worker has drained and is gone
        (ticket,) = TICKETS[handle.run_id]
        now = await s.client.snapshot(handle.run_id)
        assert now.status is RunStatus.RUNNING
        assert now.outputs == {"A": ticket}  # A finished and committed
        assert now.context == {"ticket_A": ticket}
        assert LOG[handle.run_id] == ["A"]  # B did not start on the stopping worker
        await s.start_workers(1)
        result = await handle.result(timeout=30)
    assert result.status is RunStatus.COMPLETED
    assert result.output == ticket  # B's job was not lost: it ran on the next worker
    assert LOG[handle.run_id] == ["A", "B"]
    assert TICKETS[handle.run_id] == [ticket]  # A was not run again


async def test_jobs_arriving_during_a_drain_go_to_other_workers(harness: Harness) -> None:
    """A draining worker gives back what it fetched ahead: new runs never wait for its drain.

    The draining worker's node runs until the quick runs are done (held, not timed: however
    slow the backend, the drain cannot end before them by itself).
    """
    slow = bp("slow", [n("A", "held")])
    quick = bp("quick", [n("Q", "const", value=1)])
    async with harness.session(slow, quick, workers=0) as s:
        (draining,) = await s.start_workers(1)
        first = await s.start("slow")
        await eventually(lambda: "A" in LOG[first.run_id], "A started")
        stopping = asyncio.ensure_future(s.stop_worker(draining))
        try:
            await s.start_workers(1)
            handles = [await s.start("quick") for _ in range(4)]
            results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
            drained = bool(TICKETS[first.run_id])  # the slow node finished: the drain is over
        finally:
            RELEASED.add(first.run_id)
        await stopping
        slow_result = await first.result(timeout=30)
    assert {r.status for r in results} == {RunStatus.COMPLETED}
    assert not drained, "the quick runs waited for the other worker's drain to end"
    assert slow_result.status is RunStatus.COMPLETED
    assert LOG[first.run_id] == ["A"]


async def test_a_wide_fan_in_over_three_workers_sees_every_branch_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Branches of one run finish on every worker at once; the join fires once with all.

    Their decides contend for the run (turns where the backend has a coordination store,
    compare-and-set races where not): nobody gives up, nothing handed over is dropped.
    """
    width = 240
    nodes = [n("S", "const", value=1), n("J", "echo")]
    edges = []
    for i in range(width):
        nodes.append(n(f"b{i}", "const", value=i))
        edges += [e("S", f"b{i}"), e(f"b{i}", "J")]
    blueprint = bp("wide", nodes, edges)
    caplog.set_level(logging.WARNING, logger="flowcraft")
    async with harness.session(blueprint, workers=3, concurrency=16) as s:
        result = await s.run("wide", timeout=90)
    assert result.status is RunStatus.COMPLETED
    assert result.output == {f"b{i}": i for i in range(width)}
    assert result.outputs["J"] == result.output
    assert [r.getMessage() for r in caplog.records if _gave_up(r)] == []


def _gave_up(record: logging.LogRecord) -> bool:
    """A decide that gave up on a contended run (or whose handed-over outcome was not decided)."""
    error = record.exc_info[1] if record.exc_info else None
    message = record.getMessage()
    return (
        type(error).__name__ == "ConflictError"
        or "under us" in message
        or "committed outcome failed" in message
    )
