"""Copies of a job whose attempt another worker holds never use up ``max_deliveries``.

A busy claim (another worker's live lease) gives the message back until the lease ends; each
give-back counts a delivery, so a long node whose job copies keep arriving (a sticky queue's
delayed copy, duplicates) would be dead-lettered while healthy. Past half of the deliveries
the worker enqueues the job afresh instead.
"""

from __future__ import annotations

import asyncio
import time

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
from flowcraft.core.ports import AttemptClaim, ClaimStatus


class _HeldElsewhere(MemoryRunStore):
    """A store whose first ``busy`` claims answer that another worker holds the lease."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy
        self.answered = 0

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        if self.answered < self.busy:
            self.answered += 1
            return AttemptClaim(status=ClaimStatus.BUSY, lease_until=time.time() + 0.05)
        return await super().claim_attempt(run_id, attempt, owner, lease)


@node("busy.step")
async def _step(ctx: NodeContext) -> str:
    del ctx
    return "ran"


_FLOW = Flow("busy", version="1").node("a", _step).build()


async def test_a_job_answered_busy_more_often_than_max_deliveries_still_runs() -> None:
    queue, store = MemoryJobQueue(visibility=5), _HeldElsewhere(busy=7)
    worker = Worker(queue=queue, store=store, registry={"busy.step": _step}, blueprints=[_FLOW],
                    poll=0.02, max_deliveries=2)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[_FLOW]) as client:
            result = await (await client.start("busy")).result(timeout=15)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 15)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ran")
    assert store.answered == 7  # more busy answers than max_deliveries allows deliveries
    assert queue.dead_letters == []
