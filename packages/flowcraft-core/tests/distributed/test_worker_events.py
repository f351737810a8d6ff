"""The worker's own events: a lease it could not renew, a message it dead-lettered."""

from __future__ import annotations

import asyncio

import pytest
from flowcraft.core import Client, MemoryJobQueue, MemoryRunStore, Worker, parse_blueprint
from flowcraft.core import events as fe
from flowcraft.core.testing import nodes

SLOW = parse_blueprint(
    {
        "id": "slow",
        "version": "4",
        "nodes": [{"id": "Z", "uses": "suite.sleep", "params": {"seconds": 0.4}}],
    },
    registry=nodes.registry(),
)


async def test_a_refused_lease_renewal_is_a_lease_lost_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue, store = MemoryJobQueue(), MemoryRunStore()

    async def refused(run_id: str, attempt: str, owner: str, lease: float) -> bool:
        return False  # another worker took the attempt over

    monkeypatch.setattr(store, "extend_attempt", refused)
    worker = Worker(
        queue=queue,
        store=store,
        registry=nodes.registry(),
        blueprints=[SLOW],
        poll=0.02,
        lease=0.15,
    )
    lost: list[fe.FlowEvent] = []
    worker.events.subscribe(lost.append, fe.LeaseLost)
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[SLOW]) as client:
            handle = await client.start("slow")
            await handle.result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert lost  # every renewal while the node ran was refused
    first = lost[0]
    assert isinstance(first, fe.LeaseLost)
    assert (first.run_id, first.node_id, first.attempt) == (handle.run_id, "Z", 1)
    assert (first.blueprint, first.version, first.worker) == ("slow", "4", worker.id)
    assert first.reason == "another worker holds it, or the attempt is done"
