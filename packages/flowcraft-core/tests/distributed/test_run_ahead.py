"""Running ahead: a worker runs the next attempts of a run it decided, leased by that save.

An attempt run ahead must not start before the save that leases it has committed, and must not
run at all (here) when that save does not happen.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowcraft.core import Client, Flow, MemoryJobQueue, MemoryRunStore, NodeContext, Worker, node
from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.reconciler import Reconciler
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

    flow = Flow("ahead", version="1").node("a", step).node("b", step).node("c", step)
    blueprint = flow.edge("a", "b").edge("b", "c").build()
    queue = MemoryJobQueue(visibility=5, sticky=True)
    worker = Worker(queue=queue, store=store, registry={"ahead.step": step},
                    blueprints=[blueprint], poll=0.02)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[blueprint]) as client:
            result = await (await client.start("ahead")).result(timeout=10)
    finally:
        worker.stopping.set()
        await task
    return result, runs


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
    """Short nodes: a backlog beyond the free slots (no claims needed); long or not yet seen
    nodes: none, so other workers can take them (the leases taken ahead would keep them away)."""
    worker = Worker(queue=MemoryJobQueue(sticky=True), store=MemoryRunStore(), registry={},
                    blueprints=[], concurrency=4)  # fmt: skip
    worker._slots = asyncio.Semaphore(4)  # as while running
    offered = [Message(id=f"node:{i}", body=b"{}") for i in range(40)]
    assert len(worker.pick(offered)) == 4  # no node has run yet: no backlog on a guess
    worker._reserved = 0
    worker._node_time = 0.001
    assert len(worker.pick(offered)) == 4 + 3 * 4
    worker._reserved = 0
    worker._node_time = 5.0
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
