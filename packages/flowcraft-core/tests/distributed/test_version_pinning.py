"""Runs pin their blueprint version: a worker without it leaves the job, never drops it."""

from __future__ import annotations

import asyncio

from flowcraft.core import (
    Client,
    MemoryJobQueue,
    MemoryRunStore,
    RunStatus,
    Worker,
    parse_blueprint,
)
from flowcraft.core.testing import nodes


def _blueprint(version: str, value: int) -> object:
    data = {"id": "pinned", "version": version,
            "nodes": [{"id": "a", "uses": "suite.const", "params": {"value": value}}]}  # fmt: skip
    return parse_blueprint(data, registry=nodes.registry())


async def test_job_for_an_unknown_version_waits_for_a_worker_that_has_it() -> None:
    v1, v2 = _blueprint("1", 1), _blueprint("2", 2)
    queue, store = MemoryJobQueue(visibility=5), MemoryRunStore()
    handle = await Client(queue=queue, store=store, blueprints=[v1]).start("pinned")  # type: ignore[list-item]
    stale = Worker(queue=queue, store=store, registry=nodes.registry(), blueprints=[v2],  # type: ignore[list-item]
                   poll=0.02, version_retry=0.05, max_deliveries=1000)  # fmt: skip
    task = asyncio.ensure_future(stale.run())
    await asyncio.sleep(0.4)
    assert await handle.status() is RunStatus.RUNNING  # left alone, not run with the wrong plan
    assert queue.dead_letters == []
    stale.stopping.set()
    await task
    right = Worker(queue=queue, store=store, registry=nodes.registry(), blueprints=[v1],  # type: ignore[list-item]
                   poll=0.02)  # fmt: skip
    task = asyncio.ensure_future(right.run())
    result = await handle.result(timeout=10)
    right.stopping.set()
    await task
    assert result.output == 1


async def test_unknown_version_is_dead_lettered_after_max_deliveries() -> None:
    v1, v2 = _blueprint("1", 1), _blueprint("2", 2)
    queue, store = MemoryJobQueue(visibility=5), MemoryRunStore()
    await Client(queue=queue, store=store, blueprints=[v1]).start("pinned")  # type: ignore[list-item]
    worker = Worker(queue=queue, store=store, registry=nodes.registry(), blueprints=[v2],  # type: ignore[list-item]
                    poll=0.02, version_retry=0.01, max_deliveries=3)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    for _ in range(200):
        if queue.dead_letters:
            break
        await asyncio.sleep(0.02)
    worker.stopping.set()
    await task
    (message, reason), *_ = queue.dead_letters
    assert message.id.startswith("node:")
    assert "version '1'" in reason
