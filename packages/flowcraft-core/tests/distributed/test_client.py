"""The distributed client: waiting for results."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

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
from flowcraft.core.ports import RunRecord, StoredState


class _CountingStore(MemoryRunStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.records = 0

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        self.loads += 1
        return await super().load_state(run_id, since=since, keys=keys)

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.records += 1
        return await super().get_run(run_id)


async def test_result_polls_the_record_until_the_run_is_terminal() -> None:
    release = asyncio.Event()

    @node("poll.wait")
    async def wait(ctx: NodeContext) -> str:
        del ctx
        await release.wait()
        return "done"

    flow = Flow("poll", version="1").node("w", wait).build()
    queue, store = MemoryJobQueue(visibility=5, sticky=True), _CountingStore()
    worker = Worker(queue=queue, store=store, registry={"poll.wait": wait}, blueprints=[flow],
                    poll=0.02)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[flow]) as client:
            handle = await client.start("poll")
            waiting = asyncio.ensure_future(handle.result(timeout=10))
            await asyncio.sleep(0.3)  # several polls while the node runs
            loads, records = store.loads, store.records
            await asyncio.sleep(0.3)
            assert store.records > records  # it kept polling ...
            assert store.loads == loads  # ... the record only, not the state
            release.set()
            result = await waiting
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "done")
