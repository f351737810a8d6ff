"""The client: start runs, wait for results, look, cancel, resume, list. No worker needed.

``start`` records the run (pinned to the blueprint's id, version and digest) and applies its
start, which puts the first node attempts in the queue: a worker that comes later picks them
up. Where the store is a ``RunStarter`` the run is created already started (one store write,
then the publish); otherwise ``create_run`` and the first decide's save are two. A transient
failure is retried with the same run id (idempotent: the run is created once). ``result``
waits for the store's notification where the store is a ``RunNotifier`` (PostgreSQL
``LISTEN/NOTIFY``, the memory store), reading the record again only when woken or now and
then as a fallback (a lost notification costs up to ``_FALLBACK_MAX`` seconds); other stores
are polled with a bounded backoff. A run this client starts is watched from before it
exists (``start`` subscribes first), so its first ``result`` reads nothing until the
notification comes: no terminal save can have slipped by unwatched. A settled run's result is
read from the few records it is
made of where the store is a ``ResultReader``, from its whole state otherwise. ``resume``
and ``cancel`` go through the same decide step as workers, so a wrong resume fails at once
with a clear error. The lifecycle events of the decisions the client saves (a run started,
resumed, cancelled, ...) go to :attr:`Client.events`; the workers emit the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from flowcraft.core._distributed.blueprints import BlueprintSet, blueprint_set
from flowcraft.core._distributed.coordinator import Coordinator
from flowcraft.core._distributed.notices import read_notice
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.codec import CodecError, error_from_dict
from flowcraft.core._engine.decide import new_run
from flowcraft.core._engine.plan import Plan
from flowcraft.core._engine.records import (
    all_records,
    header_of,
    result_keys,
    state_from_records,
)
from flowcraft.core._engine.state import RunState, RunStatus
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.events import EventBus
from flowcraft.core._runtime.handle import HandleBase, check_resumed, resume_event
from flowcraft.core._runtime.result import RunResult, result_of
from flowcraft.core._runtime.tracing import RunTracer
from flowcraft.core.errors import RunNotFoundError, TransientBackendError
from flowcraft.core.ports import (
    JobQueue,
    ResultReader,
    RunNotifier,
    RunPage,
    RunRecord,
    RunStarter,
    RunStore,
    RunWatch,
    StoredResult,
)

_POLL_FIRST = 0.02
_POLL_MAX = 0.5
_FALLBACK_FIRST = 1.0
_FALLBACK_MAX = 5.0
#: Watches of runs this client started and has not waited for yet (their first ``result``
#: needs no read); past this many, the oldest are closed (that ``result`` reads first).
_EARLY_WATCHES = 1024
#: Seconds ``start`` waits for the notifier to listen before it starts without a watch.
_EARLY_WATCH_WAIT = 0.5
#: Tries of a start that meets transient backend errors, and the first pause between them.
_START_ATTEMPTS = 4
_START_BACKOFF = 0.05


class DistributedRunHandle(HandleBase):
    """A run on a distributed backend: its result, status, cancel and resume."""

    def __init__(self, client: Client, run_id: str) -> None:
        super().__init__(client, run_id)
        self._client = client

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the final result (``TimeoutError`` after ``timeout`` seconds)."""
        return await self._client.result(self.run_id, timeout=timeout)

    async def status(self) -> RunStatus:
        """The run's status now."""
        return await self._client.status(self.run_id)


class Client:
    """Starts and follows runs on a distributed backend.

    Sent messages are removed from run outboxes in batches, a few milliseconds later: close
    the client (``await client.close()`` or ``async with client:``) before the process ends,
    or leftovers stay in outboxes of finished runs (harmless, never sent again once a run is
    over). ``outbox_removal_delay=None`` removes them at once.

    ``events`` (``client.events``, a new bus if None) gets the lifecycle events of the
    decisions this client saves (``start``, ``resume``, ``cancel``): pass the bus of the
    workers of the same process to see every event in one place.

    ``expression_budget`` (seconds, None: 0.1 or the budget of a ``BlueprintSet`` given as
    ``blueprints``) bounds the work of each expression this client's decisions evaluate (a
    resume routes along edges); give clients and workers the same one.

    ``tracer`` (a ``RunTracer``, e.g. ``flowcraft.core.otel.Instrumentation``) makes each run
    it starts a trace: the root span is recorded at ``start`` and every worker that runs a
    node of the run continues it.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: RunStore,
        blueprints: Sequence[Blueprint] | BlueprintSet,
        outbox_removal_delay: float | None = 0.02,
        events: EventBus | None = None,
        expression_budget: float | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        bset = blueprint_set(blueprints, expression_budget)
        self.tracer = tracer
        self.events = events if events is not None else EventBus()
        self.coordinator = Coordinator(
            store=store,
            queue=queue,
            blueprints=bset,
            defer_outbox_removal=outbox_removal_delay,
            events=self.events,
        )
        self.store = store
        self._notifier = store if isinstance(store, RunNotifier) else None
        self._starter = store if isinstance(store, RunStarter) else None
        self._reader = store if isinstance(store, ResultReader) else None
        self._early: dict[str, _EarlyWatch] = {}  # run id -> its watch, oldest first

    async def close(self) -> None:
        """Finish pending decides and outbox removals (the ports stay open: they are yours)."""
        early, self._early = self._early, {}
        for watch in early.values():
            await watch.stack.aclose()
        await self.coordinator.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(
        self,
        blueprint_id: str,
        input: object = None,
        *,
        idempotency_key: str | None = None,
        run_id: str | None = None,
    ) -> DistributedRunHandle:
        """Record and start a run; a repeated idempotency key returns the existing run.

        A transient backend error (a lost connection, a deadlock the database broke) is
        retried a few times with the same run id: a start whose answer was lost finds its run
        and sends what it had not sent, so a retry never makes a second run.
        """
        pinned = self.coordinator.blueprints.latest(blueprint_id)
        made = not run_id  # a run id made here names no run yet: watched now, no end is missed
        run_id = run_id or uuid.uuid4().hex
        now = time.time()
        record = RunRecord(
            run_id=run_id,
            blueprint_id=blueprint_id,
            blueprint_version=pinned.version,
            blueprint_digest=pinned.digest,
            input=input,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        trace = None
        if self.tracer is not None:
            trace = self.tracer.start_run(
                run_id=run_id, blueprint=blueprint_id, version=pinned.version
            )
        event = ev.RunStarted(at=now, input=input)
        early = await self._watch_early(run_id) if made else None
        try:
            for attempt in range(_START_ATTEMPTS):
                initial = new_run(run_id, pinned.plan)
                initial.trace = trace
                try:
                    created = await self._start_once(record, initial, event)
                except TransientBackendError:
                    if attempt + 1 == _START_ATTEMPTS:
                        raise
                    self.coordinator.doubt(run_id)  # it may have stood: the retry sends its outbox
                    pause = _START_BACKOFF * 4**attempt
                    await asyncio.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter
                    continue
                if early is not None:
                    kept, early = early, None
                    await self._keep_early(kept, run_id, created.run_id)
                return DistributedRunHandle(self, created.run_id)
        finally:
            if early is not None:  # not started: nobody waits for it
                await early.stack.aclose()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _watch_early(self, run_id: str) -> _EarlyWatch | None:
        """A watch of a run about to be created (None: no notifier, or not listening soon)."""
        if self._notifier is None:
            return None
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(_EARLY_WATCH_WAIT):
                watch = await stack.enter_async_context(self._notifier.watch(run_id))
        except (TransientBackendError, TimeoutError):
            await stack.aclose()
            return None
        except BaseException:
            await stack.aclose()
            raise
        return _EarlyWatch(stack, watch)

    async def _keep_early(self, early: _EarlyWatch, run_id: str, started: str) -> None:
        """Keep ``early`` (of ``run_id``) for the first ``result`` of the run ``started``.

        Another run (an existing one of the idempotency key) may be over already: not kept.
        """
        if started != run_id:
            await early.stack.aclose()
            return
        self._early[run_id] = early
        while len(self._early) > _EARLY_WATCHES:
            oldest = next(iter(self._early))
            await self._early.pop(oldest).stack.aclose()

    async def _start_once(
        self, record: RunRecord, initial: RunState, event: ev.RunStarted
    ) -> RunRecord:
        """Create and start the run: in one store write where the store is a ``RunStarter``."""
        if self._starter is not None:
            created, new = await self.coordinator.create_started(
                self._starter, record, initial, event
            )
            if new:
                return created
        else:
            header, records = header_of(initial), all_records(initial)
            created = await self.store.create_run(record, header, records)
            self.coordinator.created(created, initial)
        # The run of an existing id or key is started (a no-op if it was) with the input it
        # was created with; a store that started it in one step sends its leftover outbox.
        started = ev.RunStarted(at=event.at, input=created.input)
        await self.coordinator.apply(created.run_id, started)
        return created

    def handle(self, run_id: str) -> DistributedRunHandle:
        """The handle of an existing run."""
        return DistributedRunHandle(self, run_id)

    async def status(self, run_id: str) -> RunStatus:
        """The run's status."""
        return RunStatus((await self.coordinator.record(run_id)).status)

    async def result(self, run_id: str, *, timeout: float | None = None) -> RunResult:
        """Wait until the run is terminal and return its result.

        Woken by the store's notification where it offers one (reading the record only
        then, and every few seconds in case a notification was lost); polled otherwise.
        """
        early = self._early.pop(run_id, None)
        async with asyncio.timeout(timeout), contextlib.AsyncExitStack() as stack:
            if early is not None:  # watched since before the run existed: nothing to read yet
                stack.push_async_exit(early.stack)
                watch: RunWatch | None = early.watch
            else:
                watch = await self._watch(run_id, stack)
            delay, ceiling = (_POLL_FIRST, _POLL_MAX) if watch is None else (
                _FALLBACK_FIRST, _FALLBACK_MAX)  # fmt: skip
            # Watched since before the run existed, it can miss no notification: wait first.
            woken = early is not None and await early.watch.wait(delay)
            while True:
                try:
                    notice = None if watch is None else watch.notice
                    settled = await self._settled(run_id, woken=woken, notice=notice)
                except TransientBackendError:  # the backend hiccuped: keep waiting
                    settled = None
                if settled is not None:
                    return settled
                if watch is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 1.5, ceiling)
                elif not (woken := await watch.wait(delay)):
                    delay = min(delay * 2.0, ceiling)  # woken: the fallback period stays
        raise AssertionError("unreachable")  # pragma: no cover - the loop only returns

    async def _watch(self, run_id: str, stack: contextlib.AsyncExitStack) -> RunWatch | None:
        """Subscribe to the run's end, or None (no notifier, or it cannot listen now)."""
        if self._notifier is None:
            return None
        try:
            return await stack.enter_async_context(self._notifier.watch(run_id))
        except TransientBackendError:
            return None  # the notifier's server is unreachable now: poll instead

    async def _settled(
        self, run_id: str, *, woken: bool = False, notice: str | None = None
    ) -> RunResult | None:
        # "Settled" (terminal, and no attempt runs any more) is known only to the state, which
        # is saved together with the record's status: until the record says terminal, the
        # small record is all a poll reads (not the whole state). Woken by a notification,
        # the run has most likely ended: its result is read at once, or built from the
        # notice the notification carried (``ports.ResultNotifier``), which needs no read.
        if notice is not None and (told := read_notice(notice)) is not None:
            plan = self.coordinator.pinned(await self.coordinator.pinned_record(run_id)).plan
            with contextlib.suppress(CodecError):  # not what core wrote: read it instead
                if (result := _result_of(run_id, plan, told)) is not None:
                    return result
        if not woken and not RunStatus((await self.coordinator.record(run_id)).status).terminal:
            return None
        if self._reader is not None:
            return await self._read_result(self._reader, run_id)
        _record, _stored, state = await self.coordinator.load_run(run_id)
        return result_of(state) if state.settled else None  # settled: terminal, all done

    async def _read_result(self, reader: ResultReader, run_id: str) -> RunResult | None:
        """The result from the few records it is made of (``ports.ResultReader``)."""
        plan = self.coordinator.pinned(await self.coordinator.pinned_record(run_id)).plan
        stored = await reader.read_result(run_id, result_keys(plan))
        if stored is None:
            raise RunNotFoundError(run_id, f"no run {run_id!r}")
        try:
            return _result_of(run_id, plan, stored)
        except CodecError:  # pragma: no cover - a store that kept what it was given reads back
            _record, _stored, state = await self.coordinator.load_run(run_id)
            return result_of(state) if state.settled else None

    async def snapshot(self, run_id: str) -> RunResult:
        """The run's result as it stands now."""
        record = await self.coordinator.record(run_id)
        _stored, state = await self.coordinator.load(record)
        result = result_of(state)
        if result.status.value != record.status:  # the record is the source of truth
            errors = tuple(error_from_dict(e) for e in record.errors)
            return RunResult(
                run_id=run_id,
                status=RunStatus(record.status),
                output=record.output,
                context=result.context,
                outputs=result.outputs,
                errors=errors,
            )
        return result

    async def cancel(self, run_id: str) -> None:
        """Cancel the run (durable, idempotent)."""
        await self.coordinator.apply(run_id, ev.CancelRequested(at=time.time()))

    async def resume(
        self,
        run_id: str,
        node: str | None = None,
        *,
        output: object = None,
        action: str | None = None,
        frame: str = "",
        token: str | None = None,
    ) -> None:
        """Resume an awaiting node by id (and frame) or by token; a duplicate is a no-op."""
        event = resume_event(node, output=output, action=action, frame=frame, token=token)
        target = await self._token_run(run_id, token) if token else run_id
        applied = await self.coordinator.apply(target, event)
        check_resumed(target, applied.decision)

    async def list_runs(
        self, *, status: RunStatus | str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs, newest first, optionally of one status; pass the page's cursor for more."""
        wanted = None if status is None else RunStatus(status).value
        return await self.store.list_runs(status=wanted, limit=limit, cursor=cursor)

    async def _token_run(self, run_id: str, token: str) -> str:
        """The run (this one or a descendant) that issued ``token``."""
        pending = [run_id]
        while pending:
            current = pending.pop()
            record = await self.coordinator.record(current)
            _stored, state = await self.coordinator.load(record)
            if token in state.tokens:
                return current
            pending.extend(_children(state))
        raise RunNotFoundError(token, f"no awaiting node of run {run_id} has the token {token!r}")


@dataclass(frozen=True, slots=True)
class _EarlyWatch:
    """A watch ``start`` entered before its run existed, and the stack that closes it."""

    stack: contextlib.AsyncExitStack
    watch: RunWatch


def _result_of(run_id: str, plan: Plan, stored: StoredResult) -> RunResult | None:
    """The result a settled run's header, context and result records make; else None.

    ``CodecError`` if they are not what core wrote.
    """
    if not stored.header.get("settled"):
        return None
    state = state_from_records(run_id, plan, stored.header, stored.records, stored.context)
    return result_of(state) if state.settled else None


def _children(state: RunState) -> list[str]:
    return [r.child_run_id for r in state.nodes.values() if r.child_run_id]
