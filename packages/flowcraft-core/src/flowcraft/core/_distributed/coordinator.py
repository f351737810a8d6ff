"""The decide step every distributed component shares: load state, apply events, save, send.

``apply(run_id, event)`` loads the run's state, lets the decision core apply the event, and
saves the new state with compare-and-set together with the context writes (per key) and an
outbox of the jobs the decision produced; then it enqueues the outbox and drops what it sent.
A crash after the save leaves the outbox in the store: the next decide on the run, or the
reconciler, sends it again (job ids are deterministic, workers dedupe by claiming attempts).
A save that fails may have stood all the same (its answer lost on the way): the run's next
decide in this process loads it whole and sends the outbox it finds.
The state is saved as records (``_engine/records.py``): a save sends the header and the
records the decision changed. A lost race (the version moved on) catches up (the records saved
since, and the stored values of the records this decide changed) and applies again; the core
ignores duplicates. A run seen contended makes its decides take turns across processes, and
workers hand their outcomes over to their process's next turn (``turns.py``, :meth:`hand_over`).

Three things keep a step cheap without weakening any of that:

* **Group commit per run.** Events for one run that arrive while a decide of that run is in
  flight in this process queue up and are decided together: applied one after another to the
  state, saved once (a fan-in of many branches costs a save or two, not one per branch).
* **Known states.** The state this process saved last is kept (bounded LRU) and used for the
  next decide without loading it; the compare-and-set still guards it, and a lost race drops
  it and reloads. Jobs carry the version they were decided at, so a worker holding that
  version runs the node without a load either.
* **Outcomes ride on the save.** A worker's attempt outcome is committed by the same statement
  that saves the decision (``save_state(outcomes=...)``); if that save does not happen, the
  outcome is committed on its own (first writer wins) and the standing outcome decided.

Attempts a worker runs ahead (see :class:`AheadRunner`) are leased by the save itself, and
their messages are not kept in the outbox: the lease, not the message, is what recovers them.
A message is held back ``copy_after`` seconds and sent only if its attempt is unsettled by
then (a node that is done by then never reaches the queue). If the process dies before
sending them, the attempts stay running with a lease that expires, and the reconciler
re-enqueues them as it does every running attempt of a stalled run (the same path that covers
a crash between any save and its publish). A worker that saves no outbox for its run-ahead
steps writes and removes no outbox rows for them.

Sending, and removing what was sent from the outbox (deferred and batched, or with the run's
next save), is the :class:`~flowcraft.core._distributed.sender.Sender`'s. A save also removes
the messages of the attempts whose outcomes it commits (``save_state(sent=...)``).

Lifecycle events (``events``, an :class:`~flowcraft.core._runtime.events.EventBus`) of the
decisions of a save are emitted once that save committed, before its messages go out, and only
if someone listens: a decision that lost its compare-and-set is decided again (and emits then,
if it still changes anything), and one that changed nothing emits nothing. A node attempt's
start is left to the worker that starts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol, TypedDict, TypeVar

from flowcraft.core._distributed import jobs as j
from flowcraft.core._distributed.blueprints import BlueprintSet, Pinned
from flowcraft.core._distributed.notices import notice_of
from flowcraft.core._distributed.sender import COPY_AFTER, Sender
from flowcraft.core._distributed.turns import Turns
from flowcraft.core._engine import actions as act
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.codec import CodecError, encode_writes, event_from_dict
from flowcraft.core._engine.decide import apply
from flowcraft.core._engine.records import (
    all_records,
    changed_keys,
    changed_records,
    header_of,
    patch_state,
    state_from_records,
)
from flowcraft.core._engine.state import NodeStatus, RunState, RunStatus
from flowcraft.core._runtime.events import EventBus, event_of
from flowcraft.core._runtime.result import result_of
from flowcraft.core.errors import FlowcraftError, RunNotFoundError
from flowcraft.core.ports import (
    CoordinationStore,
    JobQueue,
    Message,
    ResultNotifier,
    RunRecord,
    RunStarter,
    RunStore,
    StoredState,
)

_T = TypeVar("_T")
#: Pause after a lost compare-and-set (seconds, doubling per conflict in a row, up to the max).
_BACKOFF = 0.001
_MAX_BACKOFF = 0.01
#: How long (seconds) messages of attempts run ahead by a save whose answer was lost are
#: tried (see ``_send_if_stood``; backing off as the sender does).
_OWED_PATIENCE = 300.0
_log = logging.getLogger("flowcraft.coordinator")
_REPORTED = {
    RunStatus.COMPLETED: ev.ChildOutcome.COMPLETED,
    RunStatus.FAILED: ev.ChildOutcome.FAILED,
    RunStatus.CANCELLED: ev.ChildOutcome.CANCELLED,
    RunStatus.AWAITING: ev.ChildOutcome.AWAITING,
    RunStatus.RUNNING: ev.ChildOutcome.RUNNING,
}


class _SaveParts(TypedDict):
    """The arguments of one ``save_state`` besides the run id (and a notice)."""

    expected_version: int
    header: Mapping[str, object]
    records: Mapping[str, object]
    context_writes: Mapping[str, object]
    outbox: Sequence[Message]
    status: str
    output: object
    errors: Sequence[Mapping[str, object]]
    outcomes: Sequence[tuple[str, bytes]]
    claims: Sequence[tuple[str, str, float]]
    sent: Sequence[str]


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


@dataclass(slots=True)
class _Known:
    """A run state as saved (or loaded) at ``version`` by this process."""

    version: int
    state: RunState


@dataclass(slots=True)
class _Turn:
    """The fencing token of a decide's turn, if it holds one (``new``: taken for it)."""

    token: int | None = None
    new: bool = False


@dataclass(slots=True)
class _Pending:
    """One event waiting for its run's next group commit."""

    event: ev.Event
    commit: tuple[str, bytes] | None
    future: asyncio.Future[tuple[Applied, asyncio.Future[None] | None]] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AheadJob:
    """A node job handed to an :class:`AheadRunner`: its message, the job, its attempt."""

    message: Message
    job: j.Job
    action: act.RunNode


class AheadRunner(Protocol):
    """A worker that runs some of a decision's node jobs at once, ahead of their messages.

    The coordinator asks it to ``pick`` among the sticky node jobs of a decision before the
    save (it reserves room for them) and hands them over with ``start`` while the save, which
    leases those attempts to ``owner`` for ``lease`` seconds, is in flight: the runner gets
    everything ready, and runs a node only once ``saved`` resolves to True. False (the save
    did not happen: nothing was leased, nothing may run) gives the room back. The messages are
    not kept in the save's outbox; each is held back ``copy_after`` seconds and not sent at
    all if a save commits its attempt's outcome by then (the lease, not the message, recovers
    the attempt after a crash). One sent reaches the runner's own sticky queue, and the runner
    settles that delivery once its run that went ahead is over.
    """

    @property
    def owner(self) -> str:
        """The lease owner (the worker id)."""
        ...

    @property
    def lease(self) -> float:
        """Seconds of the leases taken with the save."""
        ...

    @property
    def copy_after(self) -> float:
        """Seconds the message of an attempt run ahead is held back (0: sent after the save).

        An attempt whose outcome a save commits by then is never sent to the queue; one still
        unsettled then (its run failed, or is long) is, and comes back to the runner.
        """
        ...

    def pick(self, messages: Sequence[Message]) -> Sequence[Message]:
        """The messages this runner will run ahead (room reserved for them)."""
        ...

    def start(
        self, picked: Sequence[AheadJob], state: RunState, saved: asyncio.Future[bool]
    ) -> None:
        """Get ``picked`` ready over ``state`` (the decided state); run them if ``saved``."""
        ...


def pin_of(record: RunRecord) -> j.Pin:
    """The blueprint pin of a run record."""
    return j.Pin(
        blueprint=record.blueprint_id,
        version=record.blueprint_version,
        digest=record.blueprint_digest,
    )


class Coordinator:
    """Applies events to runs stored in a :class:`~flowcraft.core.ports.RunStore`.

    Args:
        store, queue, blueprints: The run store, the job queue, the blueprints known here.
        clock: Wall clock (timers' due times).
        max_conflicts: Compare-and-set conflicts in a row before ``ConflictError``.
        known_states: Run states kept in memory for the next decide (0: always load).
        defer_outbox_removal: Seconds to collect sent messages before removing them from the
            outboxes in one batch; None removes them right after sending. Deferring needs
            :meth:`close` before the process ends (the worker does it).
        sticky: Enqueue node attempts due now with the queue's ``sticky`` hint, so the process
            that decided them (and holds the run's state) runs them (workers set it).
        ahead: With ``sticky``: a worker that runs some of a decision's sticky node jobs at
            once (their leases taken by the save itself), see :class:`AheadRunner`.
        events: Where the lifecycle events of the decisions saved here go (a new bus if None).
        coordination: Where decides of a contended run take turns across processes (see
            ``turns.py``); None: they race on the compare-and-set alone.
    """

    def __init__(
        self,
        *,
        store: RunStore,
        queue: JobQueue,
        blueprints: BlueprintSet,
        clock: Callable[[], float] = time.time,
        max_conflicts: int = 100,
        known_states: int = 2048,
        defer_outbox_removal: float | None = None,
        sticky: bool = False,
        ahead: AheadRunner | None = None,
        events: EventBus | None = None,
        coordination: CoordinationStore | None = None,
    ) -> None:
        self.store = store
        #: Where a settled run's save carries its result to the waiters (capability
        #: ``result_notices``).
        self._notifier = (
            store if isinstance(store, ResultNotifier) and store.notice_limit > 0 else None
        )
        self._turns = Turns(coordination)
        self.events = events if events is not None else EventBus()
        self.queue = queue
        self.blueprints = blueprints
        self.clock = clock
        self._max_conflicts = max_conflicts
        self._pins: _Bounded[RunRecord] = _Bounded(10_000)
        self._known: _Bounded[_Known] = _Bounded(known_states)
        #: Runs whose last save here failed and may still have stood (an answer lost on the
        #: way): their next decide loads them whole and sends the outbox it finds.
        self._unsure: set[str] = set()
        self._queues: dict[str, list[_Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        sticky = sticky and queue.capabilities.sticky
        self._ahead = ahead if sticky else None
        self.sender = Sender(
            store=store,
            queue=queue,
            clock=clock,
            defer=defer_outbox_removal,
            sticky=sticky,
            spawn=self._spawn,
            copy_after=COPY_AFTER if self._ahead is None else self._ahead.copy_after,
        )

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
        """The stored state and the engine state rebuilt from it (remembered for decides)."""
        stored = await self.store.load_state(record.run_id)
        if stored is None:
            raise RunNotFoundError(record.run_id, f"run {record.run_id!r} has no state")
        return stored, self._rebuild(record, stored)

    async def load_run(self, run_id: str) -> tuple[RunRecord, StoredState, RunState]:
        """``load`` by id: the record comes with the state where the store reads both at once."""
        stored = await self.store.load_state(run_id)
        if stored is None:
            raise RunNotFoundError(run_id, f"no run {run_id!r}")
        if stored.record is not None:
            record = self._pins[run_id] = stored.record
        else:
            record = await self.pinned_record(run_id)
        return record, stored, self._rebuild(record, stored)

    def _rebuild(self, record: RunRecord, stored: StoredState) -> RunState:
        plan = self.pinned(record).plan
        state = state_from_records(
            record.run_id, plan, stored.header, stored.records, stored.context
        )
        state.changes = set()
        self._remember(record.run_id, stored.version, state)
        return state

    async def _catch_up(self, run_id: str, known: _Known) -> _Known | None:
        """Bring a held state to the store's version by loading only what changed since.

        The state may carry changes of a decide whose save was refused: the stored values of
        those records come with the load (and what the store does not have is taken out), so
        the state is exactly the stored one again. None (forgotten: load it whole) if that
        cannot be done.
        """
        state = known.state
        keys = changed_keys(state)
        try:
            stored = await self.store.load_state(run_id, since=known.version, keys=keys)
            if stored is None:
                raise RunNotFoundError(run_id, f"no run {run_id!r}")
            patch_state(state, stored.header, stored.records, set(keys) - stored.records.keys())
        except CodecError:
            _log.warning("run %s: could not catch up with the store, loading it", run_id)
            self._forget_state(run_id, state)
            return None
        except BaseException:
            self._forget_state(run_id, state)  # half caught up: never read it again
            raise
        state.context = dict(stored.context)
        state.changes = set()
        self._remember(run_id, stored.version, state)
        return _Known(version=stored.version, state=state)

    def created(self, record: RunRecord, initial: RunState) -> None:
        """Note a run this process just created with ``initial`` as its version 1 state.

        ``create_run`` returns the existing record when the id or idempotency key exists: then
        ``initial`` is only remembered if it is that run's and pinned to the same plan (a run
        that already moved past version 1 fails the compare-and-set and is loaded anyway).
        """
        self._pins[record.run_id] = record
        if record.run_id == initial.run_id and self._is_plan_of(record, initial):
            initial.changes = set()
            self._remember(record.run_id, 1, initial)

    async def create_started(
        self, starter: RunStarter, record: RunRecord, initial: RunState, event: ev.RunStarted
    ) -> tuple[RunRecord, bool]:
        """Create a run already started: ``initial`` and ``event``'s decision in one write.

        The decision is made here (as ``apply`` would make it on version 1) and written with
        the run by ``starter.create_started_run`` as version 2, then its outbox is sent.
        Returns the record and whether this call created it. ``(existing, False)``: the run
        exists (a retried start whose answer was lost, or a repeated idempotency key) and
        nothing was decided: the caller applies ``event`` to it, which loads it whole and
        sends what its outbox still holds (see :meth:`doubt`).
        """
        run_id = record.run_id
        before = initial.status
        decision = apply(initial, event)
        jobs, _nodes = await self._jobs(record, initial, [decision], before, 1)
        messages = [j.encode_job(job) for job in jobs.values()]
        try:
            created, new = await starter.create_started_run(
                record,
                header=header_of(initial),
                records=all_records(initial),
                context=dict(initial.context),  # empty, plus what the start wrote
                outbox=messages,
                status=initial.status.value,
                output=initial.output,
                errors=[e.as_dict() for e in initial.errors],
            )
        except BaseException:  # it may have stood all the same (an answer lost on the way)
            self._unsure.add(run_id)
            raise
        self._pins[created.run_id] = created
        if not new:
            self.doubt(created.run_id)
            return created, False
        self._unsure.discard(run_id)  # a retry after a start that wrote nothing
        initial.changes = set()
        self._committed(2, initial, [event], [decision])
        sending = self.sender.later(run_id, messages, jobs, frozenset())
        if sending is not None:
            await asyncio.shield(sending)
        return created, True

    def _is_plan_of(self, record: RunRecord, state: RunState) -> bool:
        pinned = self.blueprints.find(
            record.blueprint_id, record.blueprint_version, record.blueprint_digest
        )
        return pinned is not None and pinned.plan is state.plan

    def known_state(self, run_id: str, at_least: int | None) -> RunState | None:
        """The run's state held here, if it is version ``at_least`` or later (None: unknown).

        Read-only for the caller: decides of the run continue from this object, so it may
        already show changes of a decide whose save is in flight (and fails now and then).
        Everything a decided job relies on was saved, so such a state can say "run it"; it
        cannot reliably say "skip it": check a skip against the store (:meth:`load`).
        """
        known = self._known.get(run_id)
        if known is None or at_least is None or known.version < at_least:
            return None
        return known.state

    def doubt(self, run_id: str) -> None:
        """The run's last save may have stood unseen: its next decide here loads it whole.

        A worker calls it for a job whose outcome it finds committed already (a redelivery):
        whoever committed it may have died, or lost the answer of the save that carried it,
        so the jobs that save put in the outbox may never have been sent.
        """
        self._unsure.add(run_id)

    def _forget_state(self, run_id: str, state: RunState) -> None:
        known = self._known.get(run_id)
        if known is not None and known.state is state:
            del self._known[run_id]

    def _remember(self, run_id: str, version: int, state: RunState) -> None:
        known = self._known.get(run_id)
        if known is None or known.version <= version:
            self._known[run_id] = _Known(version=version, state=state)

    # ------------------------------------------------------------------ decide

    async def apply(
        self, run_id: str, event: ev.Event, *, commit: tuple[str, bytes] | None = None
    ) -> Applied:
        """Apply ``event`` to the run; save with compare-and-set; send the outbox.

        ``commit`` is the ``(attempt, outcome)`` this event is the outcome of: it is committed
        with the save (see the module docstring), and if another outcome was committed first,
        that one is decided instead. Events of one run queue behind the decide in flight and
        are then decided together; across processes the compare-and-set keeps them safe.
        """
        pending = self._enqueue(run_id, event, commit)
        applied, sending = await pending.future
        if sending is not None:  # the next decide of the run does not wait for this
            await asyncio.shield(sending)
        return applied

    async def hand_over(self, run_id: str, event: ev.Event, commit: tuple[str, bytes]) -> bool:
        """Under contention, commit an attempt's outcome on its own and decide it later.

        When the run is contended (its decides take turns, see ``turns.py``) and this process
        does not hold the turn, a worker should not hold a node slot until its turn comes: the
        outcome is committed at once (first writer wins: durable progress, the delivery may be
        settled) and its event joins this process's next decide of the run, in the background.
        A process that dies before that decide leaves a committed outcome the reconciler
        decides (as after any crash between commit and decide). Returns False, having done
        nothing, when the run is not contended or this process holds its turn: then ``apply``
        (which carries the outcome on the save) is the way.
        """
        if not self._turns.wanted(run_id) or self._turns.held(run_id) is not None:
            return False
        attempt, outcome = commit
        standing = await self.store.commit_attempt(run_id, attempt, outcome)
        if standing != outcome:  # another outcome of the attempt stands: decide that one
            event = outcome_event(standing)
        pending = self._enqueue(run_id, event, None)
        pending.future.add_done_callback(lambda done: _report_handed_over(run_id, done))
        return True

    def _enqueue(self, run_id: str, event: ev.Event, commit: tuple[str, bytes] | None) -> _Pending:
        """Queue ``event`` for the run's next decide in this process (starting one if idle)."""
        loop = asyncio.get_running_loop()
        pending = _Pending(event=event, commit=commit, future=loop.create_future())
        queue = self._queues.get(run_id)
        if queue is None:
            queue = self._queues[run_id] = []
            self._spawn(self._drain(run_id, queue))
        queue.append(pending)
        return pending

    async def _drain(self, run_id: str, queue: list[_Pending]) -> None:
        try:
            await asyncio.sleep(0)  # events of the run already under way join the first batch
            while queue:
                # Callers that gave up waiting (cancelled) stay in: their events (outcomes of
                # work already done) are decided all the same.
                batch = list(queue)
                queue.clear()
                try:
                    results, outgoing, jobs, ahead = await self._apply_batch(run_id, batch, queue)
                except Exception as exc:  # every caller of the batch sees the failure
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                except BaseException:
                    for p in batch:
                        p.future.cancel()
                    raise
                sending = self.sender.later(run_id, outgoing, jobs, ahead)
                for p, result in zip(batch, results, strict=True):
                    if not p.future.done():
                        p.future.set_result((result, sending))
        finally:
            del self._queues[run_id]
            for p in queue:  # cancelled while draining: the callers retry
                if not p.future.done():
                    p.future.cancel()

    def _spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run ``work`` in a task of its own, kept until done (``close`` waits for them)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _apply_batch(
        self, run_id: str, batch: list[_Pending], queue: list[_Pending]
    ) -> tuple[list[Applied], Sequence[Message], Mapping[str, j.Job], AbstractSet[str]]:
        """Decide a batch, in the run's turn if the run is contended (see ``turns.py``).

        While a decide waits (for its turn, or after a lost compare-and-set) the events queued
        meanwhile (``queue``) join the batch (appended to ``batch``): under contention each
        save carries more, so there are fewer.

        Returns the applied decisions, the messages to send (saved in the outbox, or leased
        to the runner ahead), the jobs of those this decision made (by message id; resent ones
        are decoded when sent) and the ids of the messages run ahead (not in the outbox).
        """
        turn = _Turn(token=self._turns.held(run_id))
        if turn.token is None and self._turns.wanted(run_id):
            turn.token = await self._turns.take(run_id)
            turn.new = turn.token is not None
            batch.extend(queue)
            queue.clear()
        try:
            return await self._decide_batch(run_id, batch, queue, turn)
        finally:
            if turn.token is not None and not (queue and self._turns.keep(run_id)):
                self._spawn(self._turns.give(run_id))

    async def _decide_batch(
        self, run_id: str, batch: list[_Pending], queue: list[_Pending], turn: _Turn
    ) -> tuple[list[Applied], Sequence[Message], Mapping[str, j.Job], AbstractSet[str]]:
        events, commits = _dedupe_attempts(batch)
        known = self._known.get(run_id)
        record = self._pins.get(run_id)
        fresh = False  # the state is known to be the stored one (loaded or caught up)
        if known is not None and turn.new:  # others decided before this turn
            known = await self._catch_up(run_id, known)
            fresh = known is not None
        if run_id in self._unsure:
            known = None
        for conflicts in range(self._max_conflicts):
            resend: Sequence[Message] = ()
            if known is None:
                self._unsure.discard(run_id)
                fresh = True
                record, stored, state = await self.load_run(run_id)
                known = _Known(version=stored.version, state=state)
                resend = [m for m in stored.outbox if not self.sender.sending(run_id, m.id)]
            if record is None:  # pragma: no cover - a held state's run is pinned
                record = await self.pinned_record(run_id)
            version, state = known.version, known.state
            before = state.status
            decisions = [apply(state, event) for event in events]
            if not any(_changed(d) for d in decisions) and not state.changes:
                if not fresh:  # a held state may be stale: only a save would have proved it
                    known = await self._catch_up(run_id, known)
                    fresh = known is not None
                    continue
                if commits:  # nothing to save, but the outcomes must stand
                    standing = await self._standing(run_id, batch, events, commits)
                    commits = ()
                    if standing != events:
                        events = standing
                        continue
                self._remember(run_id, version, state)
                unsaved = [Applied(decision=d, state=state, saved=False) for d in decisions]
                return unsaved, resend, {}, frozenset()
            jobs, nodes = await self._jobs(record, state, decisions, before, version)
            messages = [j.encode_job(job) for job in jobs.values()]
            ok, ahead = await self._save_deciding(
                record, version, state, decisions, (messages, jobs, nodes), commits
            )
            if ok:
                self._committed(version + 1, state, events, decisions)
                applied = [Applied(decision=d, state=state, saved=True) for d in decisions]
                return applied, (*resend, *messages), jobs, ahead
            # The version moved on (or an outcome was there first): catch up, decide again.
            known, events, commits = await self._refused(
                run_id, known, (batch, queue), events, commits, turn, conflicts
            )
            fresh = known is not None
        raise ConflictError(f"run {run_id}: state changed {self._max_conflicts} times under us")

    async def _save_deciding(  # noqa: PLR0917 - the parts of one save
        self,
        record: RunRecord,
        version: int,
        state: RunState,
        decisions: Sequence[act.Decision],
        made: tuple[Sequence[Message], Mapping[str, j.Job], Mapping[str, act.RunNode]],
        commits: Sequence[tuple[str, bytes]],
    ) -> tuple[bool, frozenset[str]]:
        """Save a decision whose node jobs may run ahead here; True if it stood, and their ids.

        A save that fails may have stood all the same (an answer lost on the way): the jobs
        run ahead (leased by it, kept in no outbox) are then sent once the store shows that it
        did (:meth:`_send_if_stood`), so they run wherever their lease allows (here at once,
        elsewhere once it has run out).
        """
        messages, jobs, nodes = made
        claims, saved, ahead = self._run_ahead(messages, jobs, nodes, state)
        outbox = [m for m in messages if m.id not in ahead] if ahead else messages
        ok = False
        try:
            ok = await self._save(record, version, state, decisions, outbox, commits, claims)
        except BaseException:
            if ahead:
                kept = [m for m in messages if m.id in ahead]
                self._spawn(self._send_if_stood(record.run_id, version + 1, kept, jobs))
            raise
        finally:
            if saved is not None:
                saved.set_result(ok)
        return ok, ahead

    async def _send_if_stood(
        self, run_id: str, version: int, messages: Sequence[Message], jobs: Mapping[str, j.Job]
    ) -> None:
        """Send the messages of attempts run ahead by a save whose answer was lost, if it stood.

        ``version``: the one that save would have written. Its attempts are leased by it and
        their messages are in no outbox: had it stood and they were dropped, the run would
        wait for the reconciler while this process lives. Had it not, sending them blindly
        would be worse: the attempt is decided again by the next save (the same attempt id,
        with another input once its predecessor has run again) and a stale message would run
        it with the old input. So the stored state decides: once it is at ``version`` or
        later, a message goes only if its attempt runs there with the input it carries. Loads
        (and sends) again on failure, backing off (``Sender.keep_trying``), for at most
        ``_OWED_PATIENCE`` seconds or until :meth:`close`; what is left then is the
        reconciler's (as after a crash), with a warning.
        """

        async def send_if_stood() -> str | None:
            try:
                _record, stored, state = await self.load_run(run_id)
            except RunNotFoundError:
                return None  # removed meanwhile: nothing left to run
            if stored.version < version:
                return f"the store is still at an earlier version than {version}"
            due = [m for m in messages if _leased_as_sent(state, jobs[m.id])]
            await asyncio.gather(*(self.sender.send(m, jobs[m.id]) for m in due))
            return None

        await self.sender.keep_trying(
            send_if_stood, run_id, first_wait=0, until=time.monotonic() + _OWED_PATIENCE,
            unsent=f"{len(messages)} messages of attempts run ahead by a save whose answer "
            "was lost",
        )  # fmt: skip

    async def _refused(  # noqa: PLR0917 - the parts of a decide under way
        self,
        run_id: str,
        known: _Known,
        pending: tuple[list[_Pending], list[_Pending]],
        events: list[ev.Event],
        commits: tuple[tuple[str, bytes], ...],
        turn: _Turn,
        conflicts: int,
    ) -> tuple[_Known | None, list[ev.Event], tuple[tuple[str, bytes], ...]]:
        """After a refused save: the state, events and commits to decide next.

        From now on the run's decides take turns; the held state catches up; carried outcomes
        are settled; what queued meanwhile is taken in.
        """
        self._turns.contended(run_id)
        if turn.token is None and self._turns.wanted(run_id):
            turn.token = await self._turns.take(run_id)
        caught = await self._catch_up(run_id, known)
        batch, queue = pending
        if commits:
            events = await self._standing(run_id, batch, events, commits)
            commits = ()
        pause = 0 if turn.token is not None else conflicts + 1
        events, commits = await self._take_in(batch, queue, events, commits, pause)
        return caught, events, commits

    @staticmethod
    async def _take_in(
        batch: list[_Pending],
        queue: list[_Pending],
        events: list[ev.Event],
        commits: tuple[tuple[str, bytes], ...],
        conflicts: int,
    ) -> tuple[list[ev.Event], tuple[tuple[str, bytes], ...]]:
        """After a lost compare-and-set: pause, then take in the events queued meanwhile.

        The pause grows with ``conflicts`` in a row (jittered, bounded; none for 0: in its
        turn a decide need not wait); the queued events join ``batch``.
        """
        if conflicts:
            pause = min(_BACKOFF * 2 ** (conflicts - 1), _MAX_BACKOFF)
            await asyncio.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter
        if not queue:
            return events, commits
        batch.extend(queue)
        queue.clear()
        more, more_commits = _dedupe_attempts(batch[len(events) :])
        return [*events, *more], (*commits, *more_commits)

    def _committed(
        self,
        version: int,
        state: RunState,
        applied: Sequence[ev.Event],
        decisions: Sequence[act.Decision],
    ) -> None:
        """``decisions`` (of ``applied``) were saved as ``version``: remember, then emit."""
        self._remember(state.run_id, version, state)
        if self.events.has_listeners:  # nobody listens: no event is built
            self._emit(state, applied, decisions)

    def _emit(
        self, state: RunState, applied: Sequence[ev.Event], decisions: Sequence[act.Decision]
    ) -> None:
        """Emit the lifecycle events of the saved ``decisions`` (those of ``applied``)."""
        try:
            now = self.clock()
            for event, decision in zip(applied, decisions, strict=True):
                first = isinstance(event, ev.RunStarted)
                for notice in _notices(decision):
                    public = event_of(notice, state, at=now, first=first)
                    if public is not None:
                        self.events.emit(public)
        except Exception:  # the save stands: a bug here must not look like a failed decide
            _log.exception("run %s: lifecycle events not emitted", state.run_id)

    async def _standing(
        self,
        run_id: str,
        batch: Sequence[_Pending],
        events: Sequence[ev.Event],
        commits: Sequence[tuple[str, bytes]],
    ) -> list[ev.Event]:
        """``events`` with every carried outcome replaced by the one that stands."""
        stored = await asyncio.gather(
            *(self.store.commit_attempt(run_id, attempt, outcome) for attempt, outcome in commits)
        )
        standing = {
            attempt: outcome_event(raw) for (attempt, _), raw in zip(commits, stored, strict=True)
        }
        return [
            standing.get(p.commit[0], e) if p.commit is not None else e
            for p, e in zip(batch, events, strict=True)
        ]

    def _run_ahead(
        self,
        messages: Sequence[Message],
        jobs: Mapping[str, j.Job],
        nodes: Mapping[str, act.RunNode],
        state: RunState,
    ) -> tuple[tuple[tuple[str, str, float], ...], asyncio.Future[bool] | None, frozenset[str]]:
        """Hand node jobs to the runner ahead of the save; their claims, gate and message ids.

        ``nodes`` maps the message id of each sticky node job to its attempt. The runner gets
        ready while the save is in flight and runs them once the gate says it was saved.
        """
        if self._ahead is None or not nodes:
            return (), None, frozenset()
        picked = self._ahead.pick([m for m in messages if m.id in nodes])
        if not picked:
            return (), None, frozenset()
        owner, lease = self._ahead.owner, self._ahead.lease
        saved: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        handed = [AheadJob(message=m, job=jobs[m.id], action=nodes[m.id]) for m in picked]
        self._ahead.start(handed, state, saved)
        claims = tuple((a.action.idempotency_key, owner, lease) for a in handed)
        return claims, saved, frozenset(m.id for m in picked)

    async def _save(  # noqa: PLR0917 - the parts of one save
        self,
        record: RunRecord,
        version: int,
        state: RunState,
        decisions: Sequence[act.Decision],
        messages: Sequence[Message],
        commits: Sequence[tuple[str, bytes]],
        claims: Sequence[tuple[str, str, float]],
    ) -> bool:
        writes: dict[str, object] = {}
        for decision in decisions:
            writes.update(decision.context_writes)
        run_id = record.run_id
        # Their removal rides on this save: what this process sent, and the jobs of the
        # attempts whose outcomes it commits (sent or not, nobody needs them any more).
        settled = tuple(j.node_message_id(a) for a, _ in commits)
        sent = (*self.sender.removable(run_id), *settled)
        header = header_of(state)
        parts: _SaveParts = {
            "expected_version": version,
            "header": header,
            "records": changed_records(state),
            "context_writes": encode_writes(writes),
            "outbox": messages,
            "status": state.status.value,
            "output": state.output,
            "errors": [e.as_dict() for e in state.errors],
            "outcomes": commits,
            "claims": claims,
            "sent": sent,
        }
        try:
            if self._notifier is not None and state.settled:
                notice = notice_of(state, header, version + 1)
                if notice is not None and len(notice) > self._notifier.notice_limit:
                    notice = None  # characters <= bytes: longer is surely too large
                saved = await self._notifier.save_state(run_id, **parts, notice=notice)
            else:
                saved = await self.store.save_state(run_id, **parts)
        except BaseException:  # it may have stood all the same (an answer lost on the way)
            self._unsure.add(run_id)
            self._forget_state(run_id, state)
            raise
        if saved:
            if state.changes is not None:
                state.changes.clear()
            if sent:
                self.sender.removed(run_id, sent)
            if settled:  # held messages of attempts run ahead and settled: never needed
                self.sender.settled(settled)
        return saved

    def abandon(self) -> None:
        """Drop everything under way, finishing nothing (fault injection: a process dies)."""
        self.sender.abandon()
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        """Finish queued decides and deferred outbox removals (owed messages: one last try)."""
        self.sender.close()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sender.flush()

    # ------------------------------------------------------------------ jobs of a decision

    async def _jobs(
        self,
        record: RunRecord,
        state: RunState,
        decisions: Sequence[act.Decision],
        before: RunStatus,
        version: int,
    ) -> tuple[dict[str, j.Job], dict[str, act.RunNode]]:
        """The jobs of the decisions saved as ``version + 1`` (one batch), by id, in order.

        Also returns, for a coordinator that runs ahead, message id -> attempt of the node
        jobs that go out sticky.
        """
        pin = pin_of(record)
        stamp = j.Stamp(trace=state.trace, sent_at=self.clock())
        found: dict[str, j.Job] = {}
        nodes: dict[str, act.RunNode] = {}
        for index, decision in enumerate(decisions):
            seq = str(version) if index == 0 else f"{version}.{index}"
            for action in decision.actions:
                job = await self._job_of(pin, record, action, (seq, version + 1, stamp))
                if job is None:
                    continue
                found.setdefault(job.id, job)
                if self._ahead is not None and isinstance(action, act.RunNode):
                    nodes[job.id] = action
        report = self._report_to_parent(record, state, before, version)
        if report is not None:
            found.setdefault(report.id, report)
        return found, nodes

    async def _job_of(  # noqa: PLR0911 - one return per action type
        self, pin: j.Pin, record: RunRecord, action: act.Action, at: tuple[str, int, j.Stamp]
    ) -> j.Job | None:
        """The job of ``action``; ``at``: the decision's sequence, saved version and stamp."""
        run_id = record.run_id
        seq, saved, stamp = at
        if isinstance(action, act.RunNode):
            return j.run_node_job(pin, run_id, action, seen=saved, stamp=stamp)
        if isinstance(action, act.ScheduleTimer):
            due = self.clock() + action.delay
            timer = ev.TimerFired(
                at=due,
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
                purpose=action.purpose,
            )
            return j.event_job(pin, run_id, timer, not_before=due, stamp=stamp)
        if isinstance(action, act.StartChildRun):
            child = self.blueprints.latest(action.blueprint)
            child_pin = j.Pin(
                blueprint=action.blueprint, version=child.version, digest=child.digest
            )
            parent = (run_id, action.node_id, action.frame, action.attempt)
            return j.start_run_job(child_pin, action.child_run_id, action.input, parent, stamp)
        if isinstance(action, act.CancelChildRun):
            return await self._child_job(action.child_run_id, ev.CancelRequested(at=self.clock()))
        if isinstance(action, act.ResumeChildRun):
            child_record = await self.store.get_run(action.child_run_id)
            if child_record is None:
                return None
            return j.resume_child_job(pin_of(child_record), action, seq, stamp)
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


def _leased_as_sent(state: RunState, job: j.Job) -> bool:
    """Whether the attempt ``job`` runs is running in ``state`` with the input it carries.

    Both sides are decoded JSON (a loaded state, a message body), so equal means the same.
    """
    try:
        action = j.run_node_action(job)
    except CodecError:  # pragma: no cover - made by this process a moment ago
        return False
    current = state.nodes.get((action.node_id, action.frame))
    return (
        current is not None
        and current.status is NodeStatus.RUNNING
        and current.attempt == action.attempt
        and current.input == action.input
    )


def _changed(decision: act.Decision) -> bool:
    return bool(
        decision.notices or decision.actions or decision.finished or decision.context_writes
    )


def _notices(decision: act.Decision) -> list[act.Notice]:
    """The notices the decider reports: a task attempt's start is its worker's to report."""
    actions = decision.actions
    handed = {(a.node_id, a.frame, a.attempt) for a in actions if isinstance(a, act.RunNode)}
    if not handed:
        return decision.notices
    return [
        notice
        for notice in decision.notices
        if not isinstance(notice, act.NodeNotice)
        or notice.status is not NodeStatus.RUNNING
        or (notice.node_id, notice.frame, notice.attempt) not in handed
    ]


def _dedupe_attempts(
    batch: Sequence[_Pending],
) -> tuple[list[ev.Event], tuple[tuple[str, bytes], ...]]:
    """The batch's events and outcomes to commit, one per attempt.

    The same attempt twice in one batch (two deliveries of one job in this process): the first
    outcome is the one committed, and the later event is replaced by it, as a later
    ``commit_attempt`` would return it.
    """
    first: dict[str, tuple[ev.Event, bytes]] = {}
    events: list[ev.Event] = []
    for p in batch:
        if p.commit is None:
            events.append(p.event)
            continue
        attempt, outcome = p.commit
        event, _ = first.setdefault(attempt, (p.event, outcome))
        events.append(event)
    return events, tuple((attempt, outcome) for attempt, (_, outcome) in first.items())


def _report_handed_over(
    run_id: str, done: asyncio.Future[tuple[Applied, asyncio.Future[None] | None]]
) -> None:
    """The decide of a handed-over outcome ended: say so if it failed (nobody awaits it)."""
    if done.cancelled():
        return
    failure = done.exception()
    if failure is not None:
        _log.warning(
            "run %s: the decide of a committed outcome failed (%s); the reconciler decides it",
            run_id,
            failure,
        )


def outcome_event(raw: bytes) -> ev.Event:
    """The event a committed attempt outcome encodes (``CodecError`` if it is not one)."""
    try:
        return event_from_dict(json.loads(raw))
    except ValueError as exc:
        raise CodecError(f"stored outcome is not an event: {exc}") from None
