"""A store outage longer than ``max_deliveries`` redeliveries dead-letters nothing.

A transient backend failure says nothing about the message, so the worker keeps the delivery
and tries again instead of giving it back (which would count a delivery each time).
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowcraft.core import (
    Client,
    Flow,
    MemoryJobQueue,
    MemoryRunStore,
    NodeContext,
    RunStatus,
    Worker,
    node,
)
from flowcraft.core.errors import PermanentBackendError, TransientBackendError


class _FlakyStore(MemoryRunStore):
    """A memory store whose saves fail while ``down`` (transiently, or for good)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.permanent = False
        self.struck = False
        self.refused = 0

    async def save_state(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            self.refused += 1
            if self.permanent:
                raise PermanentBackendError("save_state: schema mismatch")
            raise TransientBackendError("save_state: connection refused")
        return await super().save_state(*args, **kwargs)


_STORES: list[_FlakyStore] = []  # the store of the test running now


@node("outage.step")
async def _step(ctx: NodeContext) -> str:
    store = _STORES[-1]
    if ctx.node_id == "a" and not store.struck:  # the save of this outcome meets the outage
        store.struck = store.down = True
    return "done"


_FLOW = Flow("outage", version="1").node("a", _step).node("b", _step).edge("a", "b").build()


async def _run_through(store: _FlakyStore, queue: MemoryJobQueue, outage: float) -> Any:
    worker = Worker(queue=queue, store=store, registry={"outage.step": _step}, blueprints=[_FLOW],
                    poll=0.02, max_deliveries=2)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[_FLOW]) as client:
            handle = await client.start("outage")
            for _ in range(100):
                if store.down:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(outage)
            store.down = False
            return await handle.result(timeout=15)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 15)


async def test_a_store_outage_longer_than_the_redelivery_budget_loses_no_job() -> None:
    queue, store = MemoryJobQueue(visibility=5), _FlakyStore()
    _STORES.append(store)
    result = await _run_through(store, queue, outage=2.0)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "done")
    assert store.refused >= 3  # more failed saves than max_deliveries allows deliveries
    assert queue.dead_letters == []


async def test_a_permanent_failure_still_counts_deliveries_and_dead_letters() -> None:
    queue, store = MemoryJobQueue(visibility=5), _FlakyStore()
    store.permanent = True
    _STORES.append(store)
    worker = Worker(queue=queue, store=store, registry={"outage.step": _step}, blueprints=[_FLOW],
                    poll=0.02, max_deliveries=2)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[_FLOW]) as client:
            await client.start("outage")
            for _ in range(200):
                if queue.dead_letters:
                    break
                await asyncio.sleep(0.05)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 15)
    assert [reason for _, reason in queue.dead_letters] == ["delivered 3 times"]
