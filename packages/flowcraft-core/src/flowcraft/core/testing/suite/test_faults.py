"""Faults every backend survives: duplicates, a killed worker, poison, late workers, load."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from flowcraft.core._distributed import jobs
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message, RunStore
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.nodes import LOG, TICKETS
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually
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

    (B runs ahead on the worker that decided it, which holds B's message back ``COPY_AFTER``
    seconds: killed before that message is out, the run waits for the reconciler instead,
    ``test_reconciler_revives_lost_work_only``. So the kill comes after it.)
    """
    blueprint = bp(
        "crash",
        [
            n("A", "const", value=1),
            n("B", "sleep", seconds=COPY_AFTER + 1.5),
            n("C", "inc", inputs="A"),
        ],
        [e("A", "B"), e("B", "C")],
    )
    async with harness.session(blueprint, workers=0, lease=2.0) as s:
        (victim,) = await s.start_workers(1)
        handle = await s.start("crash")
        await eventually(lambda: "B" in LOG[handle.run_id], "B started")
        await asyncio.sleep(COPY_AFTER + 0.3)  # mid-node, B's message out
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
        # Crashed once A's outcome is committed: A is finished work (never run again), B's
        # job may be lost with the worker (or sit in the queue). A crash before that commit
        # would rightly run A's body again: the worker really dies, its save with it.
        await eventually(lambda: _committed(s, handle.run_id, "A"), "A committed")
        await s.crash_worker(first)
        stats = await s.reconciler(stalled_after=0.0).run()
        assert stats.stalled_runs >= 1
        assert stats.failed_runs == 0
        await s.start_workers(1)
        await _until(s, handle.run_id, RunStatus.AWAITING)  # B done; W still waits
        again = await s.reconciler(stalled_after=0.0).run()  # nothing to revive in W
        assert (again.failed_runs, await handle.status()) == (0, RunStatus.AWAITING)
        await asyncio.sleep(0.3)  # (nothing to wait for: a revived W would complete the run)
        assert await handle.status() is RunStatus.AWAITING  # W never "revived"
        await handle.resume("W", output="w")
        result = await handle.result(timeout=20)
    assert result.outputs["B"] == 2
    assert LOG[handle.run_id].count("A") == 1


async def _committed(session: Session, run_id: str, node_id: str) -> bool:
    """Whether the node's outcome is in the run's saved state."""
    return node_id in (await session.client.snapshot(run_id)).outputs


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


async def test_a_message_lost_after_its_save_is_revived_by_the_reconciler_only(
    harness: Harness,
) -> None:
    """The broker never got the first node's message, though the save that made it stands."""
    blueprint = bp("lost-start", [n("A", "const", value=1), n("B", "inc")], [e("A", "B")])
    async with harness.session(blueprint, workers=1) as s:
        s.recording.lose(lambda message: True)
        handle = await s.start("lost-start")
        s.recording.lose(None)
        assert s.recording.lost, "the start sent nothing to lose"
        with pytest.raises(TimeoutError):  # nothing in the queue: no worker can progress
            await handle.result(timeout=0.5)
        assert LOG[handle.run_id] == []
        stats = await s.reconciler(stalled_after=0.0).run()
        assert (stats.stalled_runs, stats.reconciled_runs, stats.failed_runs) == (1, 1, 0)
        result = await handle.result(timeout=30)
    assert (result.status, result.output) == (RunStatus.COMPLETED, 2)
    assert LOG[handle.run_id] == ["A", "B"]


async def test_a_node_longer_than_the_visibility_window_and_the_lease_runs_once(
    harness: Harness,
) -> None:
    """Lease and delivery are renewed while it runs: no other worker ever starts it."""
    lease = 1.0
    async with harness.backend() as probe:
        window = max(lease, probe.visibility_timeout or 0.0)
    blueprint = bp("long", [n("L", "sleep", seconds=window + 1.5), n("E", "echo")], [e("L", "E")])
    async with harness.session(blueprint, workers=2, lease=lease) as s:
        result = await s.run("long", "in", timeout=60)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "in")
    assert LOG[result.run_id] == ["L", "E"]


@pytest.mark.flowcraft_requires("dead_letter")
async def test_a_message_delivered_past_max_deliveries_is_dead_lettered(harness: Harness) -> None:
    """A job that fails every time (its run is gone) comes back with a rising count, then dies."""
    pin = jobs.Pin(blueprint="gone", version="1", digest="digest")
    orphan = jobs.encode_job(jobs.event_job(pin, "no-such-run", ev.CancelRequested(at=1.0)))
    blueprint = bp("unrelated", [n("A", "const", value=1)])
    async with harness.session(blueprint, workers=1, max_deliveries=3) as s:
        assert s.backend.inject is not None
        await s.backend.inject(orphan)
        deadline = time.monotonic() + 30
        while not (dead := await s.backend.dead_letters()):
            assert time.monotonic() < deadline, "never dead-lettered"
            await asyncio.sleep(0.05)
        result = await s.run("unrelated")  # the worker goes on
    assert dead == [(orphan.id, "delivered 4 times")]
    assert result.status is RunStatus.COMPLETED


class _LostRenewals:
    """A worker's run store whose lease renewals never arrive (a long pause, a partition)."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Lost on the way: the worker believes it still holds the lease."""
        del run_id, attempt, owner, lease
        return True


async def test_a_late_commit_of_a_zombie_attempt_does_not_stand_twice(harness: Harness) -> None:
    """Two workers run one attempt; the run carries the one ticket whose commit stands.

    The first worker's renewals are lost, so its lease runs out while its node runs; the
    second worker takes the attempt over (from the duplicate of its message) and runs it
    again. Both commit. Output, context and the successor's input must all come from one
    of the two executions.
    """
    blueprint = bp("zombie", [n("T", "ticket", seconds=3.0), n("E", "echo")], [e("T", "E")])
    async with harness.session(blueprint, workers=0, duplicate=True) as s:
        zombie = Worker(
            queue=s.queue,
            store=_LostRenewals(s.backend.store),  # type: ignore[arg-type]
            registry=s.registry,
            blueprints=s.blueprints,
            concurrency=1,
            lease=1.0,
            poll=0.05,
        )
        running = asyncio.ensure_future(zombie.run(shutdown_timeout=10))
        try:
            handle = await s.start("zombie")
            await eventually(lambda: "T" in LOG[handle.run_id], "T started")
            await s.start_workers(1, lease=1.0)
            result = await handle.result(timeout=40)
        finally:
            zombie.stopping.set()
            await asyncio.wait_for(running, 20)
    tickets = TICKETS[handle.run_id]
    assert LOG[handle.run_id].count("T") == 2
    assert len(tickets) == 2
    assert result.status is RunStatus.COMPLETED
    standing = result.outputs["T"]
    assert standing in tickets
    assert result.outputs["E"] == standing
    assert result.context == {"ticket_T": standing}


class _LostAnswer:
    """A worker's run store whose first save carrying an outcome commits, then fails.

    As a connection cut after the request reached the server: the save stands, the worker
    only sees an error (``TransientBackendError``, as the adapters raise it).
    """

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def save_state(self, run_id: str, **parts: Any) -> bool:  # noqa: ANN401
        saved = await self._inner.save_state(run_id, **parts)
        if saved and parts.get("outcomes") and not self.lost:
            self.lost += 1
            raise TransientBackendError("the answer of a save that committed was lost")
        return saved


async def test_a_save_whose_answer_was_lost_sends_its_outbox_without_the_reconciler(
    harness: Harness,
) -> None:
    """The outbox of a save that stood although the worker saw it fail is sent.

    The worker cannot know whether the save stood; its redelivered job finds out, and the jobs
    that save put in the outbox are sent (no reconciler runs here).
    """
    blueprint = bp("lost-answer", [n("A", "const", value=1), n("B", "inc"), n("C", "inc")],
                   [e("A", "B"), e("B", "C")])  # fmt: skip
    async with harness.session(blueprint, workers=0) as s:
        store = _LostAnswer(s.backend.store)
        worker = Worker(queue=s.queue, store=store, registry=s.registry,  # type: ignore[arg-type]
                        blueprints=s.blueprints, concurrency=2, lease=5.0, poll=0.05)  # fmt: skip
        running = asyncio.ensure_future(worker.run(shutdown_timeout=10))
        try:
            result = await s.run("lost-answer", timeout=30)
        finally:
            worker.stopping.set()
            await asyncio.wait_for(running, 20)
    assert store.lost == 1
    assert (result.status, result.output) == (RunStatus.COMPLETED, 3)
    assert LOG[result.run_id].count("C") == 1


async def test_a_sleep_costs_a_few_messages_not_a_busy_chain(harness: Harness) -> None:
    blueprint = bp("nap", [n("Z", "flowcraft.sleep", seconds=1.0), n("T", "echo")], [e("Z", "T")])
    async with harness.session(blueprint, workers=1) as s:
        started = time.monotonic()
        result = await s.run("nap", "x")
        elapsed = time.monotonic() - started
    assert (result.status, result.output) == (RunStatus.COMPLETED, "x")
    assert elapsed >= 1.0
    assert len({message_id for message_id, _delay in s.recording.sent}) <= 6, s.recording.sent


async def test_delays_beyond_max_delay_are_chained(harness: Harness) -> None:
    """A queue that declares a 0.4 s ``max_delay`` never gets a longer one; the sleep holds."""
    blueprint = bp("chain", [n("Z", "flowcraft.sleep", seconds=1.3), n("T", "echo")], [e("Z", "T")])
    async with harness.session(blueprint, workers=0) as s:
        s.recording.max_delay = 0.4
        await s.start_workers(1)
        started = time.monotonic()
        result = await s.run("chain", "x")
        finished = time.monotonic()
        elapsed = finished - started
    assert (result.status, result.output) == (RunStatus.COMPLETED, "x")
    assert s.recording.too_long == []
    # The sleep holds whatever the queue's lateness: the successor's job is sent 1.3 s after
    # the first hop (less the few ms between the sleep's decision and that send). How many
    # hops it took depends on the queue: three where delays are exact, fewer where each hop
    # comes late (whole-second delays on SQS or Azure, a loaded machine); a runtime that
    # took one hop for the whole sleep sends the successor 0.4-1 s after it. (A worker that
    # runs T ahead sends no message for it: then the run's end stands for it, which is later.)
    sends = list(zip(s.recording.sent, s.recording.sent_at, strict=True))
    first = next(i for i, ((_id, delay), _at) in enumerate(sends) if delay > 0)
    successor = next((at for (_id, delay), at in sends[first:] if delay == 0), finished)
    assert successor - sends[first][1] >= 1.2, sends
    assert len({message_id for message_id, _delay in s.recording.sent}) <= 12, s.recording.sent
    assert elapsed >= 1.3
