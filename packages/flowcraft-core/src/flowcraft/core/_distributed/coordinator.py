"""The decide step every distributed component shares: load state, apply one event, save, send.

``apply(run_id, event)`` loads the run's state, lets the decision core apply the event, and
saves the new state with compare-and-set together with the context writes (per key) and an
outbox of the jobs the decision produced; then it enqueues the outbox and removes what it sent.
A crash after the save leaves the outbox in the store: the next decide on the run, or the
reconciler, sends it again (job ids are deterministic, workers dedupe by claiming attempts).
A lost race (the version moved on) reloads and applies again; the core ignores duplicates.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from flowcraft.core._distributed import jobs as j
from flowcraft.core._distributed.blueprints import BlueprintSet, Pinned
from flowcraft.core._engine import actions as act
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.codec import encode_writes, state_from_document, state_to_document
from flowcraft.core._engine.decide import apply
from flowcraft.core._engine.state import RunState, RunStatus
from flowcraft.core._runtime.result import result_of
from flowcraft.core.errors import FlowcraftError, RunNotFoundError
from flowcraft.core.ports import JobQueue, Message, RunRecord, RunStore, StoredState

_T = TypeVar("_T")
_REPORTED = {
    RunStatus.COMPLETED: ev.ChildOutcome.COMPLETED,
    RunStatus.FAILED: ev.ChildOutcome.FAILED,
    RunStatus.CANCELLED: ev.ChildOutcome.CANCELLED,
    RunStatus.AWAITING: ev.ChildOutcome.AWAITING,
    RunStatus.RUNNING: ev.ChildOutcome.RUNNING,
}


class VersionUnavailableError(FlowcraftError):
    """This process does not have the blueprint version a run is pinned to."""


class ConflictError(FlowcraftError):
    """The run's state kept changing under us (too many compare-and-set conflicts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What a decide step did: the decision, the state after it, and whether it saved."""

    decision: act.Decision
    state: RunState
    saved: bool


def pin_of(record: RunRecord) -> j.Pin:
    """The blueprint pin of a run record."""
    return j.Pin(
        blueprint=record.blueprint_id,
        version=record.blueprint_version,
        digest=record.blueprint_digest,
    )


class Coordinator:
    """Applies events to runs stored in a :class:`~flowcraft.core.ports.RunStore`."""

    def __init__(
        self,
        *,
        store: RunStore,
        queue: JobQueue,
        blueprints: BlueprintSet,
        clock: Callable[[], float] = time.time,
        max_conflicts: int = 100,
    ) -> None:
        self.store = store
        self.queue = queue
        self.blueprints = blueprints
        self.clock = clock
        self._max_conflicts = max_conflicts
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._pins: _Bounded[RunRecord] = _Bounded(10_000)

    async def record(self, run_id: str) -> RunRecord:
        """The run's record (``RunNotFoundError`` if there is none), fresh from the store."""
        record = await self.store.get_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id, f"no run {run_id!r}")
        self._pins[run_id] = record
        return record

    async def pinned_record(self, run_id: str) -> RunRecord:
        """The run's record for its immutable fields (pin, parent, input): cached per process."""
        cached = self._pins.get(run_id)
        return cached if cached is not None else await self.record(run_id)

    def pinned(self, record: RunRecord) -> Pinned:
        """The plan the run is pinned to (``VersionUnavailableError`` if not here)."""
        pinned = self.blueprints.find(
            record.blueprint_id, record.blueprint_version, record.blueprint_digest
        )
        if pinned is None:
            raise VersionUnavailableError(
                f"run {record.run_id} is pinned to blueprint {record.blueprint_id!r} version "
                f"{record.blueprint_version!r} ({record.blueprint_digest[:12]}), not known here"
            )
        return pinned

    async def load(self, record: RunRecord) -> tuple[StoredState, RunState]:
        """The stored state and the engine state rebuilt from it."""
        stored = await self.store.load_state(record.run_id)
        if stored is None:
            raise RunNotFoundError(record.run_id, f"run {record.run_id!r} has no state")
        plan = self.pinned(record).plan
        return stored, state_from_document(stored.document, plan, stored.context)

    async def apply(self, run_id: str, event: ev.Event) -> Applied:
        """Apply ``event`` to the run; save with compare-and-set; send the outbox.

        Decisions about one run made in this process queue behind one another (a fan-in of many
        branches finishing together would otherwise mostly lose the compare-and-set and retry);
        across processes the compare-and-set alone keeps them safe.
        """
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        async with lock:
            return await self._apply(run_id, event)

    async def _apply(self, run_id: str, event: ev.Event) -> Applied:
        record = await self.pinned_record(run_id)
        for _ in range(self._max_conflicts):
            stored, state = await self.load(record)
            before = state.status
            decision = apply(state, event)
            if not _changed(decision):
                await self.publish(run_id, stored.outbox)
                return Applied(decision=decision, state=state, saved=False)
            messages = await self._messages(record, state, decision, before, stored.version)
            if await self._save(record, stored, state, decision, messages):
                await self.publish(run_id, (*stored.outbox, *messages))
                return Applied(decision=decision, state=state, saved=True)
            await asyncio.sleep(random.uniform(0, 0.002))  # noqa: S311 - contention backoff
        raise ConflictError(f"run {run_id}: state changed {self._max_conflicts} times under us")

    async def _save(
        self,
        record: RunRecord,
        stored: StoredState,
        state: RunState,
        decision: act.Decision,
        messages: Sequence[Message],
    ) -> bool:
        return await self.store.save_state(
            record.run_id,
            expected_version=stored.version,
            document=state_to_document(state),
            context_writes=encode_writes(decision.context_writes),
            outbox=messages,
            status=state.status.value,
            output=state.output,
            errors=[e.as_dict() for e in state.errors],
        )

    async def publish(self, run_id: str, messages: Sequence[Message]) -> None:
        """Enqueue messages (each at its job's ``not_before``), then drop them from the outbox."""
        if not messages:
            return
        await asyncio.gather(*(self.send(message) for message in messages))
        await self.store.remove_outbox(run_id, [m.id for m in messages])

    async def send(self, message: Message) -> None:
        """Enqueue one message, delayed until its job's ``not_before`` (chained if too long)."""
        job = j.decode_job(message.body)
        delay = 0.0 if job.not_before is None else max(0.0, job.not_before - self.clock())
        caps = self.queue.capabilities
        if not caps.native_delay:
            delay = 0.0
        elif caps.max_delay is not None:
            delay = min(delay, caps.max_delay)
        await self.queue.enqueue(message, delay=delay)

    # ------------------------------------------------------------------ jobs of a decision

    async def _messages(
        self,
        record: RunRecord,
        state: RunState,
        decision: act.Decision,
        before: RunStatus,
        version: int,
    ) -> list[Message]:
        pin = pin_of(record)
        found: list[j.Job] = []
        for action in decision.actions:
            job = await self._job_of(pin, record, action, version)
            if job is not None:
                found.append(job)
        report = self._report_to_parent(record, state, before, version)
        if report is not None:
            found.append(report)
        return [j.encode_job(job) for job in found]

    async def _job_of(  # noqa: PLR0911 - one return per action type
        self, pin: j.Pin, record: RunRecord, action: act.Action, version: int
    ) -> j.Job | None:
        run_id = record.run_id
        if isinstance(action, act.RunNode):
            return j.run_node_job(pin, run_id, action)
        if isinstance(action, act.ScheduleTimer):
            due = self.clock() + action.delay
            timer = ev.TimerFired(
                at=due,
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
                purpose=action.purpose,
            )
            return j.event_job(pin, run_id, timer, not_before=due)
        if isinstance(action, act.StartChildRun):
            child = self.blueprints.latest(action.blueprint)
            child_pin = j.Pin(
                blueprint=action.blueprint, version=child.version, digest=child.digest
            )
            parent = (run_id, action.node_id, action.frame, action.attempt)
            return j.start_run_job(child_pin, action.child_run_id, action.input, parent)
        if isinstance(action, act.CancelChildRun):
            return await self._child_job(action.child_run_id, ev.CancelRequested(at=self.clock()))
        if isinstance(action, act.ResumeChildRun):
            child_record = await self.store.get_run(action.child_run_id)
            if child_record is None:
                return None
            return j.resume_child_job(pin_of(child_record), action, version)
        return None  # CancelNode: running attempts learn it from their lease heartbeat

    async def _child_job(self, child_run_id: str, event: ev.Event) -> j.Job | None:
        child = await self.store.get_run(child_run_id)
        return None if child is None else j.event_job(pin_of(child), child_run_id, event)

    def _report_to_parent(
        self, record: RunRecord, state: RunState, before: RunStatus, version: int
    ) -> j.Job | None:
        if record.parent is None or state.status is before:
            return None
        outcome = _REPORTED.get(state.status)
        if outcome is None:
            return None
        parent_run, node_id, frame, attempt = record.parent
        result = result_of(state)
        event = ev.ChildRunChanged(
            at=self.clock(),
            node_id=node_id,
            frame=frame,
            attempt=attempt,
            outcome=outcome,
            output=result.output,
            outputs=result.outputs,
            error=result.errors[0] if result.errors else None,
        )
        job = j.event_job(j.Pin(blueprint="", version="", digest=""), parent_run, event)
        return j.Job(
            id=f"{job.id}:v{version}",
            kind=job.kind,
            run_id=parent_run,
            blueprint="",
            version="",
            digest="",
            payload=job.payload,
        )


class _Bounded(OrderedDict[str, _T]):
    """A small LRU mapping (oldest entries dropped past ``size``)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def __setitem__(self, key: str, value: _T) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self._size:
            self.popitem(last=False)


def _changed(decision: act.Decision) -> bool:
    return bool(
        decision.notices or decision.actions or decision.finished or decision.context_writes
    )
