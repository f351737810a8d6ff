"""The reconciler: finds runs without progress and puts their pending work back in the queue.

For each run whose state was last saved before the threshold, it sends the run's outbox again,
starts runs that were recorded but never started, and re-enqueues only what can be lost: node
attempts that are running (a worker's claim decides whether the lease expired: a live lease
sends the job back later), retry timers and sleeps that are due (or overdue), and child runs
that were never created. It never touches awaiting, finished, skipped or cancelled nodes, so a
pruned branch is never revived. Every re-enqueued job has its deterministic id: duplicates are
harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flowcraft.core._distributed import jobs as j
from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.coordinator import Coordinator, pin_of
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.decide import run_node_action
from flowcraft.core._engine.plan import NodeKind
from flowcraft.core._engine.scope import resolve_inputs
from flowcraft.core._engine.state import NodeRecord, NodeStatus, RunState
from flowcraft.core._runtime.events import EventBus, RunReconciled, run_fields
from flowcraft.core.aio import wait_event
from flowcraft.core.ports import JobQueue, RunRecord, RunStore

_log = logging.getLogger("flowcraft.reconciler")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileStats:
    """What one pass found and did."""

    stalled_runs: int = 0
    reconciled_runs: int = 0
    failed_runs: int = 0

    def as_dict(self) -> dict[str, int]:
        """``{stalled_runs, reconciled_runs, failed_runs}``."""
        return {
            "stalled_runs": self.stalled_runs,
            "reconciled_runs": self.reconciled_runs,
            "failed_runs": self.failed_runs,
        }


class Reconciler:
    """Re-enqueues the lost work of stalled runs.

    Args:
        stalled_after: Seconds without a saved state after which a run counts as stalled.
        batch: Most runs looked at per pass.
        events: Where the lifecycle events of its decisions go (a run recorded but never
            started, which it starts), as for ``Client``; a new bus if None.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: RunStore,
        blueprints: BlueprintSet,
        stalled_after: float = 60.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
        events: EventBus | None = None,
    ) -> None:
        self.coordinator = Coordinator(
            store=store, queue=queue, blueprints=blueprints, clock=clock, events=events
        )
        self.events = self.coordinator.events
        self.store = store
        self.stalled_after = stalled_after
        self.batch = batch
        self.clock = clock

    async def run(self) -> ReconcileStats:
        """One pass: ``{stalled_runs, reconciled_runs, failed_runs}``."""
        cutoff = self.clock() - self.stalled_after
        stalled = await self.store.stalled_runs(updated_before=cutoff, limit=self.batch)
        reconciled = failed = 0
        for run_id in stalled:
            try:
                reconciled += await self._reconcile(run_id)
            except Exception:  # one broken run must not stop the pass
                _log.exception("reconciler: run %s could not be reconciled", run_id)
                failed += 1
        return ReconcileStats(
            stalled_runs=len(stalled), reconciled_runs=reconciled, failed_runs=failed
        )

    async def run_forever(self, interval: float, stop: asyncio.Event | None = None) -> None:
        """Pass after pass, ``interval`` seconds apart, until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            stats = await self.run()
            if stats.stalled_runs:
                _log.info("reconciler: %s", stats.as_dict())
            await wait_event(stop, interval)

    async def _reconcile(self, run_id: str) -> bool:
        record = await self.coordinator.record(run_id)
        stored, state = await self.coordinator.load(record)
        await self.coordinator.sender.publish(run_id, stored.outbox)
        if state.status.value == "pending":
            await self.coordinator.apply(run_id, ev.RunStarted(at=self.clock(), input=record.input))
            self._reconciled(state, 0, len(stored.outbox), started=True)
            return True
        jobs = [job for r in state.nodes.values() if (job := self._job_for(record, state, r))]
        for job in jobs:
            await self.coordinator.sender.send(j.encode_job(job))
        if jobs or stored.outbox:
            self._reconciled(state, len(jobs), len(stored.outbox), started=False)
        return bool(jobs) or bool(stored.outbox)

    def _reconciled(self, state: RunState, jobs: int, resent: int, *, started: bool) -> None:
        if self.events.has_listeners:
            fields = run_fields(state, self.clock())
            self.events.emit(RunReconciled(jobs=jobs, resent=resent, started=started, **fields))

    def _job_for(self, record: RunRecord, state: RunState, r: NodeRecord) -> j.Job | None:
        pin = pin_of(record)
        node = state.frames[r.frame].plan.nodes[r.node_id]
        stamp = j.Stamp(trace=state.trace, sent_at=self.clock())
        if r.status is NodeStatus.RUNNING and node.kind is NodeKind.TASK:
            action = run_node_action(state.run_id, r, node)
            return j.run_node_job(pin, state.run_id, action, stamp=stamp)
        if r.status is NodeStatus.PENDING and r.due_at is not None:
            return self._timer(pin, state, r, ev.TimerPurpose.RETRY, r.attempt + 1)
        if r.status is NodeStatus.SLEEPING:
            return self._timer(pin, state, r, ev.TimerPurpose.SLEEP, r.attempt)
        if r.status is NodeStatus.RUNNING and node.kind is NodeKind.SUBFLOW and r.child_run_id:
            assert node.subflow is not None
            child = self.coordinator.blueprints.latest(node.subflow.blueprint)
            child_pin = j.Pin(
                blueprint=node.subflow.blueprint, version=child.version, digest=child.digest
            )
            parent = (state.run_id, r.node_id, r.frame, r.attempt)
            spec_input = node.subflow.input
            frame = state.frames[r.frame]
            child_input = (
                r.input if spec_input is None else resolve_inputs(state, frame, spec_input)
            )
            return j.start_run_job(child_pin, r.child_run_id, child_input, parent, stamp)
        return None

    def _timer(
        self, pin: j.Pin, state: RunState, r: NodeRecord, purpose: ev.TimerPurpose, attempt: int
    ) -> j.Job:
        due = r.due_at if r.due_at is not None else self.clock()
        timer = ev.TimerFired(
            at=due, node_id=r.node_id, frame=r.frame, attempt=attempt, purpose=purpose
        )
        stamp = j.Stamp(trace=state.trace, sent_at=self.clock())
        return j.event_job(pin, state.run_id, timer, not_before=due, stamp=stamp)
