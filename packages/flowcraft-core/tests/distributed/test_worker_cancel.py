"""A run cancelled while a node runs: the lease heartbeat cancels the node cooperatively."""

from __future__ import annotations

import asyncio

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


async def test_a_running_node_of_a_cancelled_run_is_cancelled_and_the_worker_goes_on() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    @node("cancel.slow")
    async def slow(ctx: NodeContext) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(f"cancelled {ctx.run_id} flag={ctx.cancelled.is_set()}")
            raise
        return "late"

    @node("cancel.quick")
    async def quick(ctx: NodeContext) -> str:
        del ctx
        return "quick"

    slow_flow = Flow("slow", version="1").node("s", slow).build()
    quick_flow = Flow("quick", version="1").node("q", quick).build()
    queue, store = MemoryJobQueue(visibility=5, sticky=True), MemoryRunStore()
    worker = Worker(queue=queue, store=store, registry={"cancel.slow": slow, "cancel.quick": quick},
                    blueprints=[slow_flow, quick_flow], poll=0.02, lease=0.3)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[slow_flow, quick_flow]) as client:
            handle = await client.start("slow")
            await asyncio.wait_for(started.wait(), 5)
            await handle.cancel()
            result = await handle.result(timeout=5)
            for _ in range(100):  # the heartbeat (every lease / 3) tells the node
                if seen:
                    break
                await asyncio.sleep(0.05)
            after = await (await client.start("quick")).result(timeout=5)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.status is RunStatus.CANCELLED
    assert seen == [f"cancelled {handle.run_id} flag=True"]
    assert (after.status, after.output) == (RunStatus.COMPLETED, "quick")
