"""``InMemoryWorld``: the reference World, all state in one process.

Guarantees: everything the World protocol states; ``events_create`` loads, decides (the
shared pure rules, :func:`flowcraft.core.world.decide`) and commits under one lock with no
await in between, so concurrent writers on one event loop (or threads) get a dense log.
Limits: state lives as long as its :class:`InMemoryWorldState`; pass the same state to a new
``InMemoryWorld`` to simulate a restart (queued messages, runs and streams survive).

Example::

    async with InMemoryWorld() as world:
        world.register_handler("__wkf_workflow_", handler)
        created = await world.events_create(None, NewEvent(event_type="run_created", ...))
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

from flowcraft.core.world._errors import HookNotFoundError, WorldNotFoundError, WorldRequestError
from flowcraft.core.world._memory_queue import Backoff, MemoryQueue, QueueStore
from flowcraft.core.world._memory_streams import MemoryStreams
from flowcraft.core.world._models import (
    Event,
    EventResult,
    EventType,
    Hook,
    HookReceivedData,
    HookStatus,
    NewEvent,
    Page,
    Pagination,
    QueueMessage,
    ResolveData,
    RunStatus,
    Step,
    StreamChunksPage,
    StreamInfo,
    Wait,
    WorkflowRun,
)
from flowcraft.core.world._pages import paginate
from flowcraft.core.world._protocol import QueueHandler, WorldCapabilities
from flowcraft.core.world._rules import Policy, Refusal, Snapshot, Transition, decide, reads

#: vercel-workflow's workflow queues: ``__wkf_workflow_<workflow name>``.
WORKFLOW_QUEUE_PREFIX = "__wkf_workflow_"


@dataclass(slots=True)
class _RunLog:
    """A run, its events by sequence and its entities."""

    run: WorkflowRun
    order: int
    events: dict[int, Event] = field(default_factory=dict)
    last_sequence: int = 0
    steps: dict[str, tuple[int, Step]] = field(default_factory=dict)
    hooks: dict[str, tuple[int, Hook]] = field(default_factory=dict)
    waits: dict[str, Wait] = field(default_factory=dict)
    resumes: dict[str, Event] = field(default_factory=dict)
    attrs: set[str] = field(default_factory=set)


@dataclass(slots=True)
class InMemoryWorldState:
    """Everything an ``InMemoryWorld`` stores; share it to outlive a World instance."""

    runs: dict[str, _RunLog] = field(default_factory=dict)
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    queue: QueueStore = field(default_factory=QueueStore)
    streams: MemoryStreams = field(default_factory=MemoryStreams)
    lock: threading.RLock = field(default_factory=threading.RLock)
    counter: int = 0

    def next_order(self) -> int:
        """A creation counter for list order."""
        self.counter += 1
        return self.counter


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InMemoryWorld:
    """The reference World (see the module docstring).

    Args:
        state: The storage to use (a fresh one by default).
        run_retention: How long ended runs accept events (410 after); ``None``: forever.
        dedup_window_seconds: How long an idempotency key suppresses repeats.
        backoff: Redelivery delays after a handler raised.
        clock: The time stamped on events (UTC); the queue's delays use the monotonic clock.
        recovery_queue_prefix: ``start()`` re-enqueues ``{"runId": ...}`` for each run left
            pending or running on ``prefix + workflow_name``.
    """

    def __init__(
        self,
        state: InMemoryWorldState | None = None,
        *,
        run_retention: timedelta | None = None,
        dedup_window_seconds: float = 3600.0,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = _utc_now,
        recovery_queue_prefix: str = WORKFLOW_QUEUE_PREFIX,
    ) -> None:
        self.state = state or InMemoryWorldState()
        self.capabilities = WorldCapabilities(
            dedup_window_seconds=dedup_window_seconds, run_expiry=True
        )
        self._policy = Policy(run_retention=run_retention)
        self._clock = clock
        self._recovery_prefix = recovery_queue_prefix
        self._queue = MemoryQueue(
            self.state.queue, dedup_window=dedup_window_seconds, backoff=backoff or Backoff()
        )
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the consumer; re-enqueue runs left pending or running."""
        if self._started:
            return
        self._started = True
        self._queue.start()
        with self.state.lock:
            live = [log.run for log in self.state.runs.values() if not log.run.status.terminal]
        for run in live:
            await self.queue(self._recovery_prefix + run.workflow_name, {"runId": run.run_id})

    async def aclose(self) -> None:
        """Stop the consumer (deliveries in flight are delivered again later)."""
        self._started = False
        await self._queue.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ write path

    async def events_create(self, run_id: str | None, event: NewEvent) -> EventResult:
        """Append ``event`` and apply its transition atomically (see the World protocol)."""
        resolved = _resolve_run_id(run_id, event)
        with self.state.lock:
            snapshot = self._load(resolved, event)
            outcome = decide(snapshot, resolved, event, now=self._clock(), policy=self._policy)
            if isinstance(outcome, Refusal):
                raise outcome.error
            self._commit(resolved, outcome)
        return outcome.result

    def _load(self, run_id: str, event: NewEvent) -> Snapshot:
        needs = reads(event)
        log = self.state.runs.get(run_id)
        if log is None:
            return Snapshot()
        key = event.correlation_id or ""
        holder = self._token_holder(needs.token) if needs.token is not None else None
        return Snapshot(
            run=log.run,
            last_sequence=log.last_sequence,
            step=log.steps[key][1] if needs.step and key in log.steps else None,
            hook=log.hooks[key][1] if needs.hook and key in log.hooks else None,
            wait=log.waits.get(key) if needs.wait else None,
            token_holder=holder,
            run_hooks=tuple(h for _, h in log.hooks.values()) if needs.run_hooks else (),
            resumed=log.resumes.get(needs.resume_id) if needs.resume_id is not None else None,
            attr_exists=needs.attr and key in log.attrs,
        )

    def _token_holder(self, token: str) -> Hook | None:
        owner = self.state.tokens.get(token)
        if owner is None:
            return None
        return self.state.runs[owner[0]].hooks[owner[1]][1]

    def _commit(self, run_id: str, transition: Transition) -> None:
        if not transition.events:
            return
        log = self.state.runs.get(run_id)
        if log is None:
            assert transition.run is not None
            log = self.state.runs[run_id] = _RunLog(transition.run, self.state.next_order())
        for event in transition.events:
            log.events[event.sequence] = event
            _index_event(log, event)
        log.last_sequence = transition.events[-1].sequence
        self._write_entities(log, transition)

    def _write_entities(self, log: _RunLog, transition: Transition) -> None:
        if transition.run is not None:
            log.run = transition.run
        if (step := transition.step) is not None:
            order = log.steps[step.step_id][0] if step.step_id in log.steps else len(log.steps)
            log.steps[step.step_id] = (order, step)
        for hook in (*transition.released, *_opt(transition.hook)):
            order = log.hooks[hook.hook_id][0] if hook.hook_id in log.hooks else len(log.hooks)
            log.hooks[hook.hook_id] = (order, hook)
            self._index_token(hook)
        if (wait := transition.wait) is not None:
            log.waits[wait.wait_id] = wait

    def _index_token(self, hook: Hook) -> None:
        if hook.status == HookStatus.ACTIVE:
            self.state.tokens[hook.token] = (hook.run_id, hook.hook_id)
        elif self.state.tokens.get(hook.token) == (hook.run_id, hook.hook_id):
            del self.state.tokens[hook.token]

    # ------------------------------------------------------------------ reads

    def _log(self, run_id: str) -> _RunLog:
        log = self.state.runs.get(run_id)
        if log is None:
            raise WorldNotFoundError(f"run {run_id!r} not found", code="run_not_found")
        return log

    async def runs_get(self, run_id: str, *, resolve_data: ResolveData = "all") -> WorkflowRun:
        """The run (404 if none)."""
        with self.state.lock:
            return _strip_run(self._log(run_id).run, resolve_data)

    async def runs_list(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | None = None,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[WorkflowRun]:
        """Runs in creation order, filtered."""
        with self.state.lock:
            items = [
                (log.order, _strip_run(log.run, resolve_data))
                for log in self.state.runs.values()
                if (workflow_name is None or log.run.workflow_name == workflow_name)
                and (status is None or log.run.status == status)
            ]
        return paginate(sorted(items, key=lambda item: item[0]), pagination, "runs")

    async def steps_get(
        self, run_id: str, step_id: str, *, resolve_data: ResolveData = "all"
    ) -> Step:
        """The step (404 if none)."""
        with self.state.lock:
            entry = (
                self.state.runs[run_id].steps.get(step_id) if run_id in self.state.runs else None
            )
        if entry is None:
            raise WorldNotFoundError(f"step {step_id!r} not found", code="step_not_found")
        return _strip_step(entry[1], resolve_data)

    async def steps_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Step]:
        """The run's steps in creation order."""
        with self.state.lock:
            log = self.state.runs.get(run_id)
            items = sorted(log.steps.values(), key=lambda e: e[0]) if log else []
        stripped = [(order, _strip_step(step, resolve_data)) for order, step in items]
        return paginate(stripped, pagination, "steps")

    async def hooks_get(self, run_id: str, hook_id: str) -> Hook:
        """The hook, active or disposed (404 if none)."""
        with self.state.lock:
            log = self.state.runs.get(run_id)
            entry = log.hooks.get(hook_id) if log else None
        if entry is None:
            raise HookNotFoundError(f"hook {hook_id!r} not found")
        return entry[1]

    async def hooks_get_by_token(self, token: str) -> Hook:
        """The active hook holding ``token``."""
        with self.state.lock:
            hook = self._token_holder(token)
        if hook is None:
            raise HookNotFoundError(f"no active hook holds token {token!r}")
        return hook

    async def hooks_list(self, run_id: str, *, pagination: Pagination | None = None) -> Page[Hook]:
        """The run's hooks in creation order."""
        with self.state.lock:
            log = self.state.runs.get(run_id)
            items = sorted(log.hooks.values(), key=lambda e: e[0]) if log else []
        return paginate(items, pagination, "hooks")

    async def waits_get(self, run_id: str, wait_id: str) -> Wait:
        """The wait (404 if none)."""
        with self.state.lock:
            log = self.state.runs.get(run_id)
            wait = log.waits.get(wait_id) if log else None
        if wait is None:
            raise WorldNotFoundError(f"wait {wait_id!r} not found", code="wait_not_found")
        return wait

    async def events_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Event]:
        """The run's events by sequence (an unknown run: an empty page)."""
        with self.state.lock:
            log = self.state.runs.get(run_id)
            items = sorted(log.events.items()) if log else []
        if resolve_data == "none":
            items = [(seq, event.model_copy(update={"data": None})) for seq, event in items]
        return paginate(items, pagination, "events")

    # ------------------------------------------------------------------ queue

    async def queue(
        self,
        queue_name: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay_seconds: float = 0.0,
    ) -> str:
        """Enqueue (deduplicated by ``idempotency_key`` alone)."""
        return self._queue.enqueue(queue_name, message, key=idempotency_key, delay=delay_seconds)

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        """Deliver queues starting with ``queue_prefix`` to ``handler``."""
        self._queue.register(queue_prefix, handler)

    # ------------------------------------------------------------------ streams

    async def streams_write(self, run_id: str, name: str, chunk: bytes) -> None:
        """Append one chunk."""
        self.state.streams.write(run_id, name, [chunk])

    async def streams_write_multi(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append chunks at once."""
        self.state.streams.write(run_id, name, chunks)

    async def streams_close(self, run_id: str, name: str) -> None:
        """EOF (idempotent)."""
        self.state.streams.close(run_id, name)

    def streams_get(
        self, run_id: str, name: str, start_index: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read live until EOF."""
        return self.state.streams.read(run_id, name, start_index)

    async def streams_get_chunks(
        self, run_id: str, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> StreamChunksPage:
        """A snapshot page."""
        return self.state.streams.page(run_id, name, limit, cursor)

    async def streams_get_info(self, run_id: str, name: str) -> StreamInfo:
        """Tail index and EOF flag."""
        return self.state.streams.info(run_id, name)

    async def streams_list(self, run_id: str) -> list[str]:
        """The run's stream names."""
        return self.state.streams.names(run_id)


def _index_event(log: _RunLog, event: Event) -> None:
    """Remember resume ids and ``attr_set`` correlation ids (both unique per run)."""
    data = event.data
    if isinstance(data, HookReceivedData) and data.resume_id is not None:
        log.resumes[data.resume_id] = event
    if event.event_type == EventType.ATTR_SET and event.correlation_id is not None:
        log.attrs.add(event.correlation_id)


def _resolve_run_id(run_id: str | None, event: NewEvent) -> str:
    if run_id:
        return run_id
    if event.event_type == EventType.RUN_CREATED:
        return f"wrun_{uuid.uuid4().hex}"
    raise WorldRequestError(f"{event.event_type} needs a run id", code="run_id_required")


def _opt(hook: Hook | None) -> tuple[Hook, ...]:
    return () if hook is None else (hook,)


def _strip_run(run: WorkflowRun, resolve_data: ResolveData) -> WorkflowRun:
    if resolve_data == "all":
        return run
    return run.model_copy(update={"input": None, "output": None, "error": None})


def _strip_step(step: Step, resolve_data: ResolveData) -> Step:
    if resolve_data == "all":
        return step
    return step.model_copy(update={"input": None, "output": None, "error": None})
