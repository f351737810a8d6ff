"""The worker: consumes jobs, runs node attempts under a lease, commits once, decides, acks.

Order for a node attempt (the only order there is, for every backend):
claim the attempt's lease -> run the node (renewing the lease and the delivery) -> commit the
outcome (first writer wins) -> apply it to the run (compare-and-set; successors go out through
the outbox) -> ack. Nothing is acked before durable progress; a crash anywhere makes the message
come back, and every step is safe to repeat. Poison messages (undecodable, or still
unprocessable after ``max_deliveries``) are dead-lettered with a logged reason, never dropped.
A job pinned to a blueprint version this worker lacks is left for a worker that has it
(nacked with a delay). Lifecycle events go to :attr:`Worker.events`: those of the decisions
this worker saves, and the start of every attempt it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import signal
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowcraft.core._distributed import jobs as j
from flowcraft.core._distributed.blueprints import BlueprintSet, blueprint_set
from flowcraft.core._distributed.coordinator import (
    AheadJob,
    Coordinator,
    VersionUnavailableError,
    outcome_event,
)
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.actions import RunNode
from flowcraft.core._engine.codec import CodecError, event_from_dict, event_to_dict
from flowcraft.core._engine.decide import new_run
from flowcraft.core._engine.records import all_records, header_of
from flowcraft.core._engine.state import NodeStatus, RunState
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.context import CancelFlag
from flowcraft.core._runtime.events import EventBus, LeaseLost, MessageDeadLettered, NodeStarted
from flowcraft.core._runtime.execute import NodeExecutor
from flowcraft.core._runtime.nodes import NodeForms
from flowcraft.core._runtime.serializer import JsonSerializer, Serializer
from flowcraft.core._runtime.tracing import JobTrace, current_job
from flowcraft.core.aio import wait_event
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import (
    AttemptClaim,
    ClaimStatus,
    CoordinationStore,
    Delivery,
    JobQueue,
    Message,
    RunRecord,
    RunStore,
    StoredState,
)

_log = logging.getLogger("flowcraft.worker")


class Worker:
    """Runs jobs from a queue against a run store.

    Args:
        queue, store: The backend ports (and ``coordination``, optional, for shared locks).
        registry: ``uses`` -> implementation, as for ``FlowRuntime``.
        blueprints: The blueprints (and versions) this worker can run.
        concurrency: Jobs handled at once (node attempts included).
        lease: Seconds an attempt's lease lasts; renewed every third of it while the node runs.
        max_deliveries: Deliveries after which an unprocessable message is dead-lettered.
        version_retry: Delay before a job pinned to an unknown blueprint version comes back.
        poll: Seconds one ``receive`` waits for messages.
        outbox_removal_delay: Seconds sent messages are collected before one batched removal
            from the outboxes (they are removed when the worker stops, too).
        events: The bus for lifecycle events (``worker.events``, a new one if None): the
            events of the decisions this worker saves and ``NodeStarted`` of the attempts it
            runs. Share one bus between workers (and a client) of a process to see them all.
        expression_budget: Seconds of work one expression evaluation may take (None: 0.1,
            or the budget of the ``BlueprintSet`` given as ``blueprints``); an evaluation that
            needs more fails its edge or node with ``ExpressionError``.
        copy_after: Seconds the queue message of an attempt this worker runs ahead is held
            back: an attempt settled by then is never sent to the queue; one unsettled then
            (failed here, long, or cut short by a stop) is, and comes back here. A worker that
            dies within this time of the save leaves those attempts to the reconciler (their
            leases expire), as it does for a crash between any save and its send.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: RunStore,
        registry: Mapping[str, object],
        blueprints: Sequence[Blueprint] | BlueprintSet,
        coordination: CoordinationStore | None = None,
        concurrency: int = 8,
        lease: float = 30.0,
        max_deliveries: int = 10,
        version_retry: float = 2.0,
        poll: float = 1.0,
        middleware: Sequence[object] = (),
        dependencies: Mapping[str, Any] | None = None,
        serializer: Serializer | None = None,
        worker_id: str | None = None,
        outbox_removal_delay: float = 0.02,
        events: EventBus | None = None,
        expression_budget: float | None = None,
        copy_after: float = COPY_AFTER,
    ) -> None:
        self.id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.copy_after = copy_after
        self.events = events if events is not None else EventBus()
        self.queue = queue
        self.store = store
        self.coordination = coordination
        bset = blueprint_set(blueprints, expression_budget)
        self.coordinator = Coordinator(
            store=store,
            queue=queue,
            blueprints=bset,
            defer_outbox_removal=outbox_removal_delay,
            sticky=True,
            ahead=self,
            events=self.events,
            coordination=coordination,
        )
        self._threads = ThreadPoolExecutor(max(4, concurrency), thread_name_prefix="flowcraft-node")
        self.executor = NodeExecutor(
            registry=registry,
            forms=NodeForms(self._threads),
            serializer=serializer or JsonSerializer(),
            middleware=middleware,
            dependencies=dependencies,
        )
        self.concurrency = concurrency
        self.lease = lease
        self.max_deliveries = max_deliveries
        self.version_retry = version_retry
        self.poll = poll
        self.stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Future[None]] = {}  # attempt -> its run here
        self._loads: dict[str, asyncio.Future[tuple[RunRecord, StoredState, RunState]]] = {}
        self._ahead: dict[str, tuple[_Ahead, asyncio.Task[None]]] = {}  # message id -> run
        self._slots: asyncio.Semaphore | None = None
        self._reserved = 0
        self._waiting = 0
        # Seconds a delivery held its slot lately (moving average): its node, its commit and
        # decide, and its waits for the servers and the event loop, so concurrency / this is
        # what the slots get through per second (Little's law). Until deliveries have run,
        # assume long ones: no backlog is taken ahead before there is evidence that it pays.
        self._slot_time = 10 * _AHEAD_HORIZON
        self._killed = False

    # ---------------------------------------------------------------- lifecycle

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT (stop taking jobs, finish in-flight ones)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)

    async def run(self, *, shutdown_timeout: float = 30.0) -> None:
        """Consume until :attr:`stopping` is set, then drain in-flight work."""
        slots = self._slots = asyncio.Semaphore(self.concurrency)
        try:
            while not self.stopping.is_set():
                await self._receive_batch(slots)
        finally:
            if not self._killed:
                await self._stop_receiving()
                await self._drain(shutdown_timeout)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.coordinator.close(), 10)
            self._threads.shutdown(wait=False, cancel_futures=True)

    async def _stop_receiving(self) -> None:
        """Draining: jobs fetched ahead go to other workers; next steps leave unsticky."""
        self.coordinator.sender.unstick()
        try:
            await self.queue.stop_receiving()
        except Exception:  # draining goes on: what it held comes back when the process ends
            _log.exception("worker %s: could not give back the jobs fetched ahead", self.id)

    def kill(self) -> None:
        """Die like a SIGKILLed process (fault injection): settle nothing, renew nothing."""
        self._killed = True
        self.stopping.set()
        for task in list(self._inflight):
            task.cancel()
        self.coordinator.abandon()  # no decide or send of this "process" goes on

    async def _receive_batch(self, slots: asyncio.Semaphore) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return
        try:
            deliveries = await self.queue.receive(free, self.poll)
        except Exception:  # a transient backend failure must not kill the worker
            _log.exception("worker %s: receive failed; retrying", self.id)
            await asyncio.sleep(min(self.poll, 1.0))
            return
        for delivery in deliveries:
            self._spawn(delivery, slots)

    def _spawn(self, delivery: Delivery, slots: asyncio.Semaphore) -> asyncio.Task[None]:
        """Handle ``delivery`` in a task of its own, counted in flight until done."""
        task = asyncio.ensure_future(self._guarded(delivery, slots))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def _drain(self, timeout: float) -> None:
        if not self._inflight:
            return
        _done, pending = await asyncio.wait(self._inflight, timeout=timeout)
        for task in pending:  # their deliveries are nacked by _guarded
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # ------------------------------------------------ running ahead (AheadRunner)

    @property
    def owner(self) -> str:
        """Lease owner of the attempts this worker runs ahead."""
        return self.id

    def pick(self, messages: Sequence[Message]) -> Sequence[Message]:
        """The next attempts of a run decided here that this worker runs at once.

        Their messages go to this worker's sticky queue and come back here (or, if this
        process dies or dawdles, to another worker): the delivery then waits for the run that
        went ahead and is acked if it finished (handled as usual if not). Beyond free slots,
        as many may wait for a slot as the slots get through in about ``_AHEAD_HORIZON``
        seconds at the recent time a delivery holds a slot (node, commit, decide and the waits
        between: a worker whose saves take longer than its nodes gets through fewer), at most
        ``_AHEAD_MOST`` per slot: taking them here costs no claim, and new jobs are received
        only below ``concurrency``; more would keep nodes from other workers for longer than
        the horizon (their leases are ours). Room is reserved until ``start``. Never while
        stopping.
        """
        if self._slots is None or self.stopping.is_set():
            return ()
        busy = len(self._inflight) - self._waiting  # deliveries waiting for ahead runs: idle
        through = self.concurrency * _AHEAD_HORIZON / max(self._slot_time, 1e-3)
        backlog = min(_AHEAD_MOST * self.concurrency, int(through))
        room = self.concurrency + backlog - busy - self._reserved
        picked = [m for m in messages if m.id not in self._ahead][: max(0, room)]
        self._reserved += len(picked)
        return picked

    def start(
        self, picked: Sequence[AheadJob], state: RunState, saved: asyncio.Future[bool]
    ) -> None:
        """Get the picked attempts ready now (the save that leases them is in flight).

        Each runs over ``state`` (the decided state) once ``saved`` says the save happened;
        if it did not, nothing was leased and the attempt does not run here.
        """
        self._reserved -= len(picked)
        assert self._slots is not None
        for item in picked:
            ahead = _Ahead(item, state, saved)
            task = self._spawn(ahead, self._slots)
            self._ahead[ahead.message_id] = (ahead, task)
            task.add_done_callback(functools.partial(self._forget_ahead, ahead))

    def _forget_ahead(self, ahead: _Ahead, _task: object) -> None:
        """Keep a finished run-ahead for its delivery a while (the sticky timeout is short)."""
        if not ahead.done:  # not saved or failed: its delivery is handled as usual
            self._ahead.pop(ahead.message_id, None)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(_AHEAD_KEPT, self._ahead.pop, ahead.message_id, None)

    async def _guarded(self, delivery: Delivery, slots: asyncio.Semaphore) -> None:
        went = None if isinstance(delivery, _Ahead) else self._ahead.pop(delivery.message_id, None)
        if went is not None:
            ahead, task = went
            self._waiting += 1
            try:
                await asyncio.shield(task)
            finally:
                self._waiting -= 1
            if ahead.done:  # the run that went ahead settled it: this copy is the same job
                with contextlib.suppress(Exception):
                    await delivery.ack()
                return
        async with slots:
            began = time.perf_counter()
            try:
                await self._outlasting_outages(delivery)
            except asyncio.CancelledError:
                if not self._killed:  # graceful shutdown: give the job back at once
                    with contextlib.suppress(Exception):
                        await asyncio.shield(delivery.nack(0.0))
                raise
            except Exception as exc:  # never ack on failure: the message comes back
                if isinstance(delivery, _Ahead) and isinstance(exc, TransientBackendError):
                    _log.warning(
                        "worker %s: job %s run ahead: backend unavailable (%s); its queue "
                        "message runs it as usual", self.id, delivery.message_id, exc,
                    )  # fmt: skip
                else:
                    _log.exception(
                        "worker %s: job %s failed; it will be redelivered",
                        self.id, delivery.message_id,
                    )  # fmt: skip
                with contextlib.suppress(Exception):
                    await delivery.nack(min(30.0, 0.5 * delivery.delivery_count))
            finally:
                took = time.perf_counter() - began
                self._slot_time += (took - self._slot_time) * 0.2

    async def _outlasting_outages(self, delivery: Delivery) -> None:
        """Handle ``delivery``; while the backend is unavailable, retry here with backoff.

        A transient backend failure (the store or coordination down, a timeout) says nothing
        about the message. Giving it back would count a delivery each time, and an outage
        longer than the backoff of ``max_deliveries`` deliveries would dead-letter healthy
        jobs. So the worker keeps the message (extending its invisibility) and tries again,
        as a redelivery to this worker would, until the backend answers or the worker stops.
        """
        wait = _OUTAGE_FIRST_WAIT
        while True:
            try:
                if isinstance(delivery, _Ahead):  # decided here: no decoding, pinned
                    await self._run_node_action(delivery.job, delivery.action, delivery)
                else:
                    await self.handle(delivery)
                return
            except TransientBackendError as exc:
                if self.stopping.is_set() or isinstance(delivery, _Ahead):
                    raise  # (a run ahead's queue message is handled as usual when it arrives)
                _log.warning(
                    "worker %s: job %s: backend unavailable (%s); trying again in %.1f s",
                    self.id, delivery.message_id, exc, wait,
                )  # fmt: skip
                await delivery.extend(wait + self.lease)  # raises if the broker is down too
                await wait_event(self.stopping, wait)
                if self.stopping.is_set():
                    raise
                wait = min(_OUTAGE_MAX_WAIT, wait * 2)

    # ---------------------------------------------------------------- dispatch

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery to the end (settled: acked, nacked or dead-lettered)."""
        try:
            job = j.decode_job(delivery.body)
        except CodecError as exc:
            await self._dead(delivery, f"undecodable message: {exc}")
            return
        if delivery.delivery_count > self.max_deliveries:
            await self._dead(delivery, f"delivered {delivery.delivery_count} times", job)
            return
        if job.not_before is not None and job.not_before > time.time():  # never early
            await self._chain(job, delivery)
            return
        try:
            await _HANDLERS[job.kind](self, job, delivery)
        except VersionUnavailableError as exc:
            await self._version_missing(delivery, str(exc), job)
        except CodecError as exc:
            await self._dead(delivery, f"malformed job: {exc}", job)

    async def _dead(self, delivery: Delivery, reason: str, job: j.Job | None = None) -> None:
        if self.events.has_listeners:
            self.events.emit(_dead_lettered(delivery.message_id, reason, job))
        else:
            _log.error("worker %s: dead-lettering %s: %s", self.id, delivery.message_id, reason)
        await delivery.dead_letter(reason)

    async def _version_missing(self, delivery: Delivery, reason: str, job: j.Job) -> None:
        if delivery.delivery_count >= self.max_deliveries:
            await self._dead(delivery, reason, job)
            return
        _log.warning(
            "worker %s: leaving %s for another worker: %s", self.id, delivery.message_id, reason
        )
        await delivery.nack(self.version_retry)

    async def _chain(self, job: j.Job, delivery: Delivery, not_before: float | None = None) -> None:
        """Enqueue the job afresh (a new message, a new delivery count), then ack this one.

        For a job received before its time (the rest of its delay), or one to come back at
        ``not_before`` instead of its own.
        """
        chained = dataclasses.replace(job, id=f"{job.id}~{delivery.delivery_count}")
        if not_before is not None:
            chained = dataclasses.replace(chained, not_before=not_before)
        await self.coordinator.sender.send(j.encode_job(chained), chained)
        await delivery.ack()

    async def _busy(self, job: j.Job, delivery: Delivery, lease_until: float) -> None:
        """Another worker holds the attempt's lease: come back when the lease ends.

        A busy answer says nothing bad about the message, but giving it back counts a
        delivery: a node that runs for many leases while copies of its job arrive (a sticky
        queue's delayed copy, a duplicate) would use up ``max_deliveries`` and be
        dead-lettered while healthy. From half of them on, the job is enqueued afresh (a new
        delivery count), delayed until the lease ends, and this delivery is acked.
        """
        wait = max(0.2, lease_until - time.time())
        if delivery.delivery_count < max(1, self.max_deliveries // 2):
            await delivery.nack(wait)
            return
        await self._chain(job, delivery, not_before=time.time() + wait)

    def _require_pin(self, job: j.Job) -> None:
        if self.coordinator.blueprints.find(job.blueprint, job.version, job.digest) is None:
            raise VersionUnavailableError(
                f"job {job.id} needs blueprint {job.blueprint!r} version {job.version!r} "
                f"({job.digest[:12]}), not known to this worker"
            )

    # ---------------------------------------------------------------- job kinds

    async def _event(self, job: j.Job, delivery: Delivery) -> None:
        event = event_from_dict(job.payload)
        await self.coordinator.apply(job.run_id, event)
        await delivery.ack()

    async def _start_run(self, job: j.Job, delivery: Delivery) -> None:
        self._require_pin(job)
        pinned = self.coordinator.blueprints.find(job.blueprint, job.version, job.digest)
        assert pinned is not None
        parent = job.payload.get("parent")
        now = time.time()
        record = RunRecord(
            run_id=job.run_id,
            blueprint_id=job.blueprint,
            blueprint_version=job.version,
            blueprint_digest=job.digest,
            input=job.payload.get("input"),
            parent=None if parent is None else (parent[0], parent[1], parent[2], int(parent[3])),
            created_at=now,
            updated_at=now,
        )
        initial = new_run(job.run_id, pinned.plan)
        initial.trace = job.trace  # a child run is part of its parent's trace
        created = await self.store.create_run(record, header_of(initial), all_records(initial))
        self.coordinator.created(created, initial)
        await self.coordinator.apply(job.run_id, ev.RunStarted(at=now, input=created.input))
        await delivery.ack()

    async def _resume_child(self, job: j.Job, delivery: Delivery) -> None:
        record = await self.coordinator.record(job.run_id)
        _stored, state = await self.coordinator.load(record)
        awaiting = [r for r in state.nodes.values() if r.status is NodeStatus.AWAITING]
        if len(awaiting) != 1:
            await self._dead(
                delivery,
                f"resume of {job.run_id} is ambiguous: {len(awaiting)} awaiting nodes",
                job,
            )
            return
        target = awaiting[0]
        event = ev.NodeResumed(
            at=time.time(),
            node_id=target.node_id,
            frame=target.frame,
            output=job.payload.get("output"),
            action=job.payload.get("action"),
        )
        await self.coordinator.apply(job.run_id, event)
        await delivery.ack()

    async def _run_node(self, job: j.Job, delivery: Delivery) -> None:
        self._require_pin(job)
        await self._run_node_action(job, j.run_node_action(job), delivery)

    async def _run_node_action(self, job: j.Job, action: RunNode, delivery: Delivery) -> None:
        attempt = action.idempotency_key
        running = self._running.get(attempt)
        if running is not None:  # a duplicate delivery while this process runs the attempt:
            await asyncio.shield(running)  # our own lease would let it run twice at once
        done = self._running[attempt] = asyncio.get_running_loop().create_future()
        try:
            await self._run_attempt(job, action, delivery)
        finally:
            if self._running.get(attempt) is done:
                del self._running[attempt]
            done.set_result(None)

    async def _run_attempt(self, job: j.Job, action: RunNode, delivery: Delivery) -> None:
        attempt = action.idempotency_key
        if isinstance(delivery, _Ahead):  # leased by the save it waits for
            if not await delivery.saved:
                return
            known: RunState | None = delivery.state
            state = delivery.state
            if time.time() - delivery.leased_at < self.lease / 3:
                lease_until = delivery.leased_at + self.lease
                claim = AttemptClaim(status=ClaimStatus.CLAIMED, lease_until=lease_until)
            else:  # it waited long for a slot: renew the lease (or learn it is gone)
                claim = await self.store.claim_attempt(job.run_id, attempt, self.id, self.lease)
        elif (known := self.coordinator.known_state(job.run_id, j.seen_version(job))) is None:
            # claim and load at once (the load is wasted only if not CLAIMED)
            claiming = self.store.claim_attempt(job.run_id, attempt, self.id, self.lease)
            loading = self._shared_load(job.run_id, j.seen_version(job))
            claim, state = await asyncio.gather(claiming, loading)
        else:
            claim = await self.store.claim_attempt(job.run_id, attempt, self.id, self.lease)
            state = known
        if claim.status is ClaimStatus.BUSY:
            await self._busy(job, delivery, claim.lease_until)
            return
        if claim.status is ClaimStatus.DONE:
            assert claim.outcome is not None
            self.coordinator.doubt(job.run_id)  # its committer may not have sent what it made
            await self._decide_outcome(job.run_id, claim.outcome)
            await delivery.ack()
            return
        if known is not None and not _runnable(state, action):
            state = await self._load(job.run_id)  # a held state may show an unsaved change
        event = await self._execute(job, action, delivery, state)
        if isinstance(delivery, _Ahead):  # its siblings, woken by the same save, start first
            await asyncio.sleep(0)
        if event is not None:
            outcome = json.dumps(event_to_dict(event), separators=(",", ":")).encode()
            commit = (attempt, outcome)
            if not await self.coordinator.hand_over(job.run_id, event, commit):
                await self.coordinator.apply(job.run_id, event, commit=commit)
        await delivery.ack()

    async def _load(self, run_id: str) -> RunState:
        _record, _stored, state = await self.coordinator.load_run(run_id)
        return state

    async def _shared_load(self, run_id: str, at_least: int | None) -> RunState:
        """The run's state for running a node, one load for every job of the run waiting.

        A worker meeting a wide run runs many of its nodes at once: they share a load in
        flight if it read version ``at_least`` (the one the job was decided at) or later. A
        job that does not say its version loads on its own.
        """
        if at_least is None:
            return await self._load(run_id)
        loading = self._loads.get(run_id)
        if loading is None:
            loading = asyncio.ensure_future(self.coordinator.load_run(run_id))
            self._loads[run_id] = loading
            loading.add_done_callback(lambda done: self._loaded(run_id, done))
        _record, stored, state = await asyncio.shield(loading)
        if stored.version < at_least:
            return await self._load(run_id)  # that load began before this job was decided
        return state

    def _loaded(
        self, run_id: str, done: asyncio.Future[tuple[RunRecord, StoredState, RunState]]
    ) -> None:
        if self._loads.get(run_id) is done:
            del self._loads[run_id]
        if not done.cancelled():
            done.exception()  # retrieved: each waiter sees it

    async def _decide_outcome(self, run_id: str, outcome: bytes) -> None:
        await self.coordinator.apply(run_id, outcome_event(outcome))

    async def _execute(
        self, job: j.Job, action: RunNode, delivery: Delivery, state: RunState
    ) -> ev.Event | None:
        if not _runnable(state, action):
            return None  # cancelled or superseded: nothing to run, nothing to commit
        cancelled = CancelFlag()
        ctx = self.executor.context_for(action, state, cancelled)
        current_job.set(_job_trace(job))
        if self.events.has_listeners:
            self._started(job, action)
        this = asyncio.current_task()
        assert this is not None
        beat = _Heartbeat(self, job, action, delivery, this, cancelled)
        try:  # in this task: a cancelled run cancels it (the executor returns None then)
            return await self.executor.execute(action, ctx)
        finally:
            beat.stop()

    def _started(self, job: j.Job, action: RunNode) -> None:
        """Emit the start of an attempt this worker runs now (once per execution)."""
        self.events.emit(
            NodeStarted(
                run_id=job.run_id,
                at=time.time(),
                blueprint=job.blueprint,
                version=job.version,
                trace=job.trace,
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
            )
        )


def _job_trace(job: j.Job) -> JobTrace:
    """What the running attempt's job carried beside its work (read by instrumentation)."""
    return JobTrace(
        trace=job.trace,
        sent_at=job.sent_at,
        not_before=job.not_before,
        blueprint=job.blueprint,
        version=job.version,
    )


def _dead_lettered(message_id: str, reason: str, job: j.Job | None) -> MessageDeadLettered:
    """The event of a dead-lettered message (what is known of its job, if it was decoded)."""
    node = job.payload.get("node_id") if job is not None else None
    attempt = job.payload.get("attempt") if job is not None else None
    return MessageDeadLettered(
        run_id=job.run_id if job is not None else "",
        at=time.time(),
        blueprint=job.blueprint if job is not None else "",
        version=job.version if job is not None else "",
        trace=job.trace if job is not None else None,
        message_id=message_id,
        reason=reason,
        node_id=node if isinstance(node, str) else None,
        attempt=attempt if isinstance(attempt, int) else None,
    )


class _Heartbeat:
    """Renews a running attempt's lease and delivery every third of the lease.

    A timer rather than a task per attempt (most nodes finish before it ever fires). A run
    cancelled meanwhile cancels the task running the node (cooperatively: its ``cancelled``
    flag is set first, and the executor returns None for such a cancellation); ``stop`` is
    called as soon as the node is done, so the cancellation can only reach the node.
    """

    def __init__(  # noqa: PLR0917 - what one renewal needs
        self,
        worker: Worker,
        job: j.Job,
        action: RunNode,
        delivery: Delivery,
        node: asyncio.Future[Any],
        cancelled: CancelFlag,
    ) -> None:
        self._worker, self._job, self._action = worker, job, action
        self._run_id, self._attempt = job.run_id, action.idempotency_key
        self._delivery, self._node, self._cancelled = delivery, node, cancelled
        self._renewing: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(worker.lease / 3, self._fire)

    def stop(self) -> None:
        self._timer.cancel()
        if self._renewing is not None:
            self._renewing.cancel()

    def _fire(self) -> None:
        self._renewing = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        worker = self._worker
        with contextlib.suppress(Exception):
            try:
                kept = await worker.store.extend_attempt(
                    self._run_id, self._attempt, worker.id, worker.lease
                )
            except Exception as exc:
                self._lost(f"renewal failed: {exc}")
                raise
            if not kept:
                self._lost("another worker holds it, or the attempt is done")
            await self._delivery.extend(worker.lease)
            record = await worker.store.get_run(self._run_id)
            if record is not None and record.status == "cancelled":
                self._cancelled.set()
                self._node.cancel()
        if not self._node.done():
            self._timer = asyncio.get_running_loop().call_later(worker.lease / 3, self._fire)

    def _lost(self, reason: str) -> None:
        events, job, action = self._worker.events, self._job, self._action
        if events.has_listeners:
            events.emit(
                LeaseLost(
                    run_id=job.run_id,
                    at=time.time(),
                    blueprint=job.blueprint,
                    version=job.version,
                    trace=job.trace,
                    node_id=action.node_id,
                    frame=action.frame,
                    attempt=action.attempt,
                    worker=self._worker.id,
                    reason=reason,
                )
            )


#: Seconds a finished run-ahead is remembered for its sticky delivery.
_AHEAD_KEPT = 60.0
# Backoff while the backend is unavailable (see ``Worker._outlasting_outages``).
_OUTAGE_FIRST_WAIT = 0.25
_OUTAGE_MAX_WAIT = 10.0
#: Attempts run ahead may wait for a slot as long as the slots need for them about this long.
_AHEAD_HORIZON = 1.0
#: At most this many attempts per slot wait for one: a bound on a wrong estimate. When a
#: run's nodes turn long after quick ones, what was taken ahead on the quick estimate waits
#: here, leased, until its lease runs out (then another worker's copy takes it over).
_AHEAD_MOST = 8


class _Ahead:
    """The delivery of a job this worker runs ahead of its queue message (see ``start``).

    It runs over ``state`` once ``saved`` says the decision (and the lease) was saved.
    Settling it only records whether the job is done; the queue message is settled when it
    arrives.
    """

    def __init__(self, item: AheadJob, state: RunState, saved: asyncio.Future[bool]) -> None:
        self.message = item.message
        self.job = item.job
        self.action = item.action
        self.state = state
        self.saved = saved
        self.leased_at = time.time()  # (a little before the save's lease starts)
        self.done = False

    @property
    def message_id(self) -> str:
        return self.message.id

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def delivery_count(self) -> int:
        return 1

    async def ack(self) -> None:
        self.done = True

    async def nack(self, delay: float = 0.0) -> None:
        del delay  # not done: the queue message is handled as usual when it arrives

    async def extend(self, seconds: float) -> None:
        del seconds

    async def dead_letter(self, reason: str) -> None:
        del reason  # the queue message meets the same fate when it arrives


def _runnable(state: RunState, action: RunNode) -> bool:
    """Whether ``action`` is the running attempt of its node in ``state``."""
    current = state.nodes.get((action.node_id, action.frame))
    return (
        current is not None
        and current.status is NodeStatus.RUNNING
        and current.attempt == action.attempt
    )


_HANDLERS = {
    j.JobKind.RUN_NODE: Worker._run_node,
    j.JobKind.EVENT: Worker._event,
    j.JobKind.START_RUN: Worker._start_run,
    j.JobKind.RESUME_CHILD: Worker._resume_child,
}
