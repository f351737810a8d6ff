"""Decide turns of contended runs (``turns.py``) and outcomes handed over to them."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from flowcraft.core import (
    Client,
    Flow,
    MemoryCoordinationStore,
    MemoryJobQueue,
    MemoryRunStore,
    NodeContext,
    Reconciler,
    Worker,
)
from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.coordinator import Coordinator
from flowcraft.core._distributed.turns import Turns
from flowcraft.core._engine.codec import event_to_dict
from flowcraft.core._engine.events import NodeSucceeded
from flowcraft.core._engine.frames import attempt_id
from flowcraft.core.ports import ClaimStatus


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Broken(MemoryCoordinationStore):
    async def acquire_lock(self, name: str, *, ttl: float) -> int | None:
        raise ConnectionError("down")


def test_a_run_takes_turns_only_while_it_is_contended() -> None:
    clock = _Clock()
    turns = Turns(MemoryCoordinationStore(), window=2.0, threshold=3, clock=clock)
    assert not turns.wanted("r")
    turns.contended("r")
    turns.contended("r")
    assert not turns.wanted("r")  # a conflict now and then: retrying is cheaper
    clock.now += 1.9
    turns.contended("r")
    assert turns.wanted("r")
    clock.now += 1.9
    assert turns.wanted("r")
    clock.now += 0.2
    assert not turns.wanted("r")
    turns.contended("r")
    assert not turns.wanted("r")  # the count starts again after the window


def test_without_a_coordination_store_nothing_takes_turns() -> None:
    turns = Turns(None)
    turns.contended("r")
    assert not turns.wanted("r")


async def test_one_process_holds_a_turn_the_other_waits_and_gives_up() -> None:
    store = MemoryCoordinationStore()
    first, second = Turns(store, max_wait=0.05), Turns(store, max_wait=0.05)
    token = await first.take("r")
    assert token is not None
    assert first.held("r") == token
    assert await second.take("r") is None  # waited max_wait, decides without a turn
    assert second.wanted("r")  # meeting a held turn is contention too
    assert await first.take("other") is not None  # turns are per run
    await first.give("r")
    assert first.held("r") is None
    later = await second.take("r")
    assert later is not None
    assert later > token  # fencing tokens only grow


async def test_a_holder_keeps_its_turn_only_for_the_hold_time() -> None:
    clock = _Clock()
    turns = Turns(MemoryCoordinationStore(), hold=0.02, clock=clock)
    assert not turns.keep("r")
    await turns.take("r")
    assert turns.keep("r")
    clock.now += 0.03
    assert not turns.keep("r")


async def test_a_failing_store_means_no_turn_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    turns = Turns(_Broken())
    with caplog.at_level(logging.WARNING, logger="flowcraft"):
        assert await turns.take("r") is None
    assert "no decide turn" in caplog.text


# ---------------------------------------------------------------------- handing outcomes over


async def _one(ctx: NodeContext) -> int:
    del ctx
    return 1


async def _started(store: MemoryRunStore, queue: MemoryJobQueue) -> tuple[Flow, str]:
    """A one-node run whose node attempt 1 is running (nobody runs it)."""
    flow = Flow("one", version="1").node("a", _one)
    async with Client(queue=queue, store=store, blueprints=[flow.build()]) as client:
        handle = await client.start("one")
    return flow, handle.run_id


def _outcome(output: int) -> tuple[NodeSucceeded, bytes]:
    event = NodeSucceeded(at=1.0, node_id="a", attempt=1, output=output)
    return event, json.dumps(event_to_dict(event)).encode()


async def _handed_over(
    output: int, *, contended: bool, before: int | None = None
) -> tuple[bool, ClaimStatus, str, object]:
    """Hand over the node's outcome ``output`` (``before``: an outcome committed earlier)."""
    store, queue = MemoryRunStore(), MemoryJobQueue()
    flow, run_id = await _started(store, queue)
    attempt = attempt_id(run_id, ("a", ""), 1)
    if before is not None:
        await store.commit_attempt(run_id, attempt, _outcome(before)[1])
    coordinator = Coordinator(
        store=store,
        queue=queue,
        blueprints=BlueprintSet([flow.build()]),
        coordination=MemoryCoordinationStore(),
    )
    for _ in range(3 if contended else 0):  # as three refused saves would
        coordinator._turns.contended(run_id)
    event, raw = _outcome(output)
    handed = await coordinator.hand_over(run_id, event, (attempt, raw))
    claim = await store.claim_attempt(run_id, attempt, "someone", 10.0)
    await coordinator.close()  # the decide in the background is done
    run = await store.get_run(run_id)
    assert run is not None
    return handed, claim.status, run.status, run.output


async def test_a_contended_run_takes_an_outcome_at_once_and_decides_it_after() -> None:
    handed, claim, status, output = await _handed_over(5, contended=True)
    assert (handed, claim) == (True, ClaimStatus.DONE)  # committed before the decide
    assert (status, output) == ("completed", 5)


async def test_a_handed_over_outcome_yields_to_the_one_committed_first() -> None:
    assert await _handed_over(5, contended=True, before=7) == (
        True,
        ClaimStatus.DONE,
        "completed",
        7,
    )


async def test_an_uncontended_run_is_not_handed_over() -> None:
    handed, claim, status, _ = await _handed_over(5, contended=False)
    assert (handed, claim, status) == (False, ClaimStatus.CLAIMED, "running")


async def test_a_handed_over_outcome_of_a_process_that_died_is_decided_by_the_reconciler() -> None:
    store, queue = MemoryRunStore(), MemoryJobQueue()
    flow, run_id = await _started(store, queue)
    for delivery in await queue.receive(10, 0.1):  # the node ran here; its delivery was acked
        await delivery.ack()
    dying = Coordinator(
        store=store,
        queue=queue,
        blueprints=BlueprintSet([flow.build()]),
        coordination=MemoryCoordinationStore(),
    )
    for _ in range(3):
        dying._turns.contended(run_id)
    event, raw = _outcome(5)
    assert await dying.hand_over(run_id, event, (attempt_id(run_id, ("a", ""), 1), raw))
    dying.abandon()  # the process dies before its next turn decides the outcome
    await asyncio.sleep(0.05)
    assert (await _status(store, run_id)) == ("running", None)
    reconciler = Reconciler(
        queue=queue, store=store, blueprints=BlueprintSet([flow.build()]), stalled_after=0.0
    )
    stats = await reconciler.run()
    assert stats.reconciled_runs == 1
    worker = Worker(queue=queue, store=store, registry=flow.registry(), blueprints=[flow.build()])
    task = asyncio.ensure_future(worker.run())
    try:
        for _ in range(200):
            if (await _status(store, run_id))[0] == "completed":
                break
            await asyncio.sleep(0.02)
    finally:
        worker.stopping.set()
        await task
    assert (await _status(store, run_id)) == ("completed", 5)  # the committed outcome, once


async def _status(store: MemoryRunStore, run_id: str) -> tuple[str, object]:
    run = await store.get_run(run_id)
    assert run is not None
    return run.status, run.output
