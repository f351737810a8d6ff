"""Running ahead: a worker runs the next attempts of a run it decided, leased by that save.

An attempt run ahead must not start before the save that leases it has committed, and must not
run at all (here) when that save does not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from flowcraft.core import Client, Flow, MemoryJobQueue, MemoryRunStore, NodeContext, Worker, node
from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.reconciler import Reconciler
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import ClaimStatus, Message


class _LosingStore(MemoryRunStore):
    """Slow saves that lease attempts; the first ``losses`` of them are lost (as if another
    process saved first)."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.log: list[str] = []

    async def save_state(self, run_id: str, **fields: Any) -> bool:
        claims = fields.get("claims", ())
        leased = sorted(attempt for attempt, _owner, _lease in claims)
        if claims:
            await asyncio.sleep(0.01)  # the nodes get ready meanwhile; they must not start yet
        if claims and self.losses > 0:
            self.losses -= 1
            self.log.append(f"lost {leased}")
            return False
        saved = await super().save_state(run_id, **fields)
        if claims:
            self.log.append(f"{'saved' if saved else 'refused'} {leased}")
        return saved


async def _run_chain(store: _LosingStore) -> tuple[Any, dict[str, int]]:
    runs: dict[str, int] = {}

    @node("ahead.step")
    async def step(ctx: NodeContext) -> int:
        runs[ctx.node_id] = runs.get(ctx.node_id, 0) + 1
        # Someone else trying to take the attempt finds it leased: the lease was saved first.
        claim = await store.claim_attempt(ctx.run_id, ctx.idempotency_key, "intruder", 30)
        store.log.append(f"ran {ctx.node_id}: {claim.status.value}")
        return int(ctx.input or 0) + 1

    queue = MemoryJobQueue(visibility=5, sticky=True)
    return await _run_abc("ahead.step", step, store=store, queue=queue), runs


async def _run_abc(
    key: str, step: Any, *, store: MemoryRunStore, queue: MemoryJobQueue, **worker: Any
) -> Any:
    """The result of a -> b -> c, each ``step`` (registered as ``key``, the blueprint named
    as its prefix), on one worker (``worker``: its arguments beyond these)."""
    name = key.partition(".")[0]
    flow = Flow(name, version="1").node("a", step).node("b", step).node("c", step)
    blueprint = flow.edge("a", "b").edge("b", "c").build()
    runner = Worker(queue=queue, store=store, registry={key: step}, blueprints=[blueprint],
                    poll=0.02, **worker)  # fmt: skip
    task = asyncio.ensure_future(runner.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[blueprint]) as client:
            return await (await client.start(name)).result(timeout=10)
    finally:
        runner.stopping.set()
        await task


async def test_an_attempt_run_ahead_starts_only_after_its_lease_is_saved() -> None:
    store = _LosingStore(losses=0)
    result, runs = await _run_chain(store)
    assert (result.status.value, result.output) == ("completed", 3)
    assert runs == {"a": 1, "b": 1, "c": 1}
    # b and c went ahead (leased by the save that decided them), each after that save
    for node_id in ("b", "c"):
        saved = next(
            i
            for i, line in enumerate(store.log)
            if line.startswith("saved") and f":{node_id}#" in line
        )
        assert saved < store.log.index(f"ran {node_id}: {ClaimStatus.BUSY.value}"), store.log


async def test_nothing_runs_ahead_of_a_save_that_did_not_happen() -> None:
    store = _LosingStore(losses=2)
    result, runs = await _run_chain(store)
    assert (result.status.value, result.output) == ("completed", 3)
    assert runs == {"a": 1, "b": 1, "c": 1}  # prepared twice, never started by a lost save
    lost = [i for i, line in enumerate(store.log) if line.startswith("lost")]
    assert len(lost) == 2
    for node_id in ("b", "c"):
        ran = next(i for i, line in enumerate(store.log) if line.startswith(f"ran {node_id}:"))
        assert store.log[ran] == f"ran {node_id}: {ClaimStatus.BUSY.value}", store.log
        assert all(
            not (line.startswith("lost") and f":{node_id}#" in line) for line in store.log[ran:]
        )


async def test_a_worker_takes_ahead_what_its_slots_get_to_soon() -> None:
    """Quick deliveries: a backlog beyond the free slots (no claims needed), as many as the
    slots get through in about a second, bounded; slow or not yet seen ones: none, so other
    workers can take them (the leases taken ahead would keep them away)."""
    worker = Worker(queue=MemoryJobQueue(sticky=True), store=MemoryRunStore(), registry={},
                    blueprints=[], concurrency=4)  # fmt: skip
    worker._slots = asyncio.Semaphore(4)  # as while running
    offered = [Message(id=f"node:{i}", body=b"{}") for i in range(400)]
    assert len(worker.pick(offered)) == 4  # nothing has run yet: no backlog on a guess
    worker._reserved = 0
    worker._slot_time = 0.2  # 4 slots get through 20 a second
    assert len(worker.pick(offered)) == 4 + 20
    worker._reserved = 0
    worker._slot_time = 0.0001  # 40,000 a second: at most 8 a slot wait
    assert len(worker.pick(offered)) == 4 + 8 * 4
    worker._reserved = 0
    worker._slot_time = 5.0
    assert len(worker.pick(offered)) == 4
    assert worker.pick(offered[4:]) == []  # the free slots are reserved now


class _RecordingStore(_LosingStore):
    """Records the outbox and the claims of every save that took place (and loses none)."""

    def __init__(self) -> None:
        super().__init__(losses=0)
        self.saves: list[tuple[list[str], list[str]]] = []

    async def save_state(self, run_id: str, **fields: Any) -> bool:
        saved = await super().save_state(run_id, **fields)
        if saved:
            outbox = [m.id for m in fields.get("outbox", ())]
            self.saves.append((outbox, [attempt for attempt, _, _ in fields.get("claims", ())]))
        return saved


async def test_attempts_run_ahead_are_leased_by_the_save_not_kept_in_its_outbox() -> None:
    store = _RecordingStore()
    result, runs = await _run_chain(store)
    assert (result.status.value, runs) == ("completed", {"a": 1, "b": 1, "c": 1})
    leased = [(outbox, claims) for outbox, claims in store.saves if claims]
    assert {c.rsplit(":", 1)[1] for _, claims in leased for c in claims} == {"b#1", "c#1"}
    for outbox, claims in leased:
        assert not {f"node:{attempt}" for attempt in claims} & set(outbox)
    state = await store.load_state(result.run_id)
    assert state is not None
    assert state.outbox == ()


class _MuteStickyQueue(MemoryJobQueue):
    """A queue that never delivers sticky messages: as if the deciding worker died between
    its save and sending them."""

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        if not sticky:
            await super().enqueue(message, delay=delay)


async def test_an_attempt_run_ahead_whose_message_was_never_sent_is_reconciled() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    @node("mute.step")
    async def step(ctx: NodeContext) -> int:
        ran.append(ctx.node_id)
        if ctx.node_id == "b" and len(ran) == 2:  # the first run of b: its worker "dies" in it
            started.set()
            await release.wait()
        return int(ctx.input or 0) + 1

    blueprint = Flow("mute", version="1").node("a", step).node("b", step).edge("a", "b").build()
    queue, store = _MuteStickyQueue(visibility=5, sticky=True), MemoryRunStore()

    def worker() -> Worker:
        return Worker(queue=queue, store=store, registry={"mute.step": step},
                      blueprints=[blueprint], poll=0.02, lease=1.0)  # fmt: skip

    victim = worker()
    task = asyncio.ensure_future(victim.run())
    async with Client(queue=queue, store=store, blueprints=[blueprint]) as client:
        handle = await client.start("mute")
        await asyncio.wait_for(started.wait(), 10)
        victim.kill()  # b was leased by the save that decided it; no message of it exists
        await task
        assert (await store.load_state(handle.run_id)).outbox == ()  # type: ignore[union-attr]
        survivor = worker()
        rescue = asyncio.ensure_future(survivor.run())
        reconciler = Reconciler(queue=queue, store=store, blueprints=BlueprintSet([blueprint]),
                                stalled_after=0.0)  # fmt: skip
        assert (await reconciler.run()).reconciled_runs == 1  # b re-enqueued (lease still live)
        result = await handle.result(timeout=20)
        survivor.stopping.set()
        await rescue
    assert (result.status.value, result.output) == ("completed", 2)
    assert ran == ["a", "b", "b"]  # b ran again once its lease had expired


class _UnreachableQueue(MemoryJobQueue):
    """Refuses enqueues (as a broker whose connections were cut) until ``reachable_at``."""

    reachable_at = 0.0

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        if time.monotonic() < self.reachable_at:
            raise TransientBackendError("enqueue: connection refused")
        await super().enqueue(message, delay=delay, sticky=sticky)


class _AnswerLostStore(MemoryRunStore):
    """The first save that leases attempts fails as a cut connection makes it fail: having
    stood (``stands``, its answer lost) or not, and the queue unreachable for ``outage``
    seconds from then (both behind the same cut)."""

    def __init__(self, queue: _UnreachableQueue, outage: float, *, stands: bool) -> None:
        super().__init__()
        self.queue = queue
        self.outage = outage
        self.stands = stands
        self.lost = 0

    async def save_state(self, run_id: str, **fields: Any) -> bool:
        if fields.get("claims") and not self.lost:
            self.lost += 1
            self.queue.reachable_at = time.monotonic() + self.outage
            if self.stands:
                assert await super().save_state(run_id, **fields)
            raise TransientBackendError("save_state: connection reset")
        return await super().save_state(run_id, **fields)


async def _run_cut_chain(
    store: _AnswerLostStore, *, ahead_once: bool = False
) -> tuple[Any, list[tuple[str, Any]]]:
    """Run a -> b -> c; ``ahead_once``: only the first decision runs attempts ahead."""
    ran: list[tuple[str, Any]] = []

    @node("owed.step")
    async def step(ctx: NodeContext) -> dict[str, Any]:
        ran.append((ctx.node_id, ctx.input))
        # Each execution makes another output (a ticket), in a shape JSON changes (a tuple).
        return {"node": ctx.node_id, "ticket": len(ran), "pair": (len(ran), ctx.node_id)}

    flow = Flow("owed", version="1").node("a", step).node("b", step).node("c", step)
    blueprint = flow.edge("a", "b").edge("b", "c").build()
    worker = Worker(queue=store.queue, store=store, registry={"owed.step": step},
                    blueprints=[blueprint], poll=0.02, lease=1.0)  # fmt: skip
    if ahead_once:
        picks = 0
        pick = worker.pick

        def first_only(messages: Sequence[Message]) -> Sequence[Message]:
            nonlocal picks
            picks += 1
            return pick(messages) if picks == 1 else ()

        worker.pick = first_only  # type: ignore[method-assign]
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=store.queue, store=store, blueprints=[blueprint]) as client:
            result = await (await client.start("owed")).result(timeout=10)
    finally:
        worker.stopping.set()
        await task
    assert store.lost == 1
    return result, ran


@pytest.mark.parametrize("outage", [0.0, 0.5])
async def test_a_live_worker_sends_what_it_leased_ahead_even_if_the_queue_was_down(
    outage: float,
) -> None:
    """The save leasing b stood unseen; b's message, in no outbox, could not be sent at once.
    No reconciler: the worker that owes it sends it once the queue takes messages again."""
    queue = _UnreachableQueue(visibility=5, sticky=True)
    result, ran = await _run_cut_chain(_AnswerLostStore(queue, outage, stands=True))
    assert result.status.value == "completed"
    assert [node_id for node_id, _ in ran] == ["a", "b", "c"]


@pytest.mark.parametrize("ahead_once", [False, True])
@pytest.mark.parametrize("outage", [0.0, 0.5])
async def test_what_a_save_that_did_not_stand_leased_never_runs(
    outage: float, ahead_once: bool
) -> None:
    """The save leasing b failed without standing: a runs again (another output) and the next
    save decides b#1 again, with that output (run ahead again, or sent as usual). b#1 runs
    once, with the output that stands: the message of the lost save (the same attempt, the
    old input) is never sent."""
    queue = _UnreachableQueue(visibility=5, sticky=True)
    store = _AnswerLostStore(queue, outage, stands=False)
    result, ran = await _run_cut_chain(store, ahead_once=ahead_once)
    assert result.status.value == "completed"
    assert [node_id for node_id, _ in ran] == ["a", "a", "b", "c"]
    b_input = dict(ran)["b"]
    assert b_input["ticket"] == 2, ran  # the second run of a: the one whose save stood
    assert b_input == result.outputs["a"]


class _CountingQueue(MemoryJobQueue):
    """Records the id of every message enqueued."""

    def __init__(self) -> None:
        super().__init__(visibility=5, sticky=True)
        self.sent: list[str] = []

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        self.sent.append(message.id)
        await super().enqueue(message, delay=delay, sticky=sticky)


class _FailingOnceStore(MemoryRunStore):
    """The first save that commits ``node``'s outcome fails without standing."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self.failed = 0

    async def save_state(self, run_id: str, **fields: Any) -> bool:
        outcomes = fields.get("outcomes", ())
        if not self.failed and any(f":{self.node}#" in attempt for attempt, _ in outcomes):
            self.failed += 1
            raise TransientBackendError("save_state: connection reset")
        return await super().save_state(run_id, **fields)


async def _run_held(store: MemoryRunStore, queue: _CountingQueue) -> tuple[Any, list[str]]:
    """Run a -> b -> c on one worker that holds run-ahead messages back 0.2 s."""
    ran: list[str] = []

    @node("held.step")
    async def step(ctx: NodeContext) -> int:
        ran.append(ctx.node_id)
        return int(ctx.input or 0) + 1

    result = await _run_abc("held.step", step, store=store, queue=queue, lease=0.5,
                            copy_after=0.2)  # fmt: skip
    return result, ran


async def test_attempts_run_ahead_and_settled_soon_never_reach_the_queue() -> None:
    queue = _CountingQueue()
    result, ran = await _run_held(MemoryRunStore(), queue)
    assert (result.status.value, result.output, ran) == ("completed", 3, ["a", "b", "c"])
    assert [m.rpartition(":")[2] for m in queue.sent] == ["a#1"]  # the client's, for a
    assert await queue.receive(10, wait=0.3) == []  # nothing sent later either


async def test_an_attempt_run_ahead_that_failed_here_runs_from_its_held_message() -> None:
    """b ran ahead, but the save of its outcome failed (it did not stand): b's message, held
    back, is sent once the hold is over and runs b as usual (here: the same worker)."""
    queue = _CountingQueue()
    result, ran = await _run_held(_FailingOnceStore("b"), queue)
    assert (result.status.value, result.output, ran) == ("completed", 3, ["a", "b", "b", "c"])
    assert [m.rpartition(":")[2] for m in queue.sent] == ["a#1", "b#1"]
