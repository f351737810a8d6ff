"""The World port: what a durable-execution backend must do, and what it guarantees.

A World stores runs, steps, hooks and waits as the fold of an append-only event log per run,
delivers queue messages to handlers, and keeps append-only streams. The runtime (the
official ``vercel-workflow`` runtime through a bridge, or flowcraft's own) owns every
sequence; a World needs no base class, only these methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from flowcraft.core.world._models import (
    Event,
    EventResult,
    Hook,
    NewEvent,
    Page,
    Pagination,
    QueueMessage,
    Redeliver,
    ResolveData,
    RunStatus,
    Step,
    StreamChunksPage,
    StreamInfo,
    Wait,
    WorkflowRun,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorldCapabilities:
    """What a World declares about itself (read by runtimes and by the World suite).

    Attributes:
        max_delay_seconds: The longest ``delay_seconds`` (or redelivery delay) the queue
            takes in one hop; ``None``: no limit. Runtimes chain longer delays.
        dedup_window_seconds: How long an idempotency key suppresses repeats.
        run_expiry: The World takes a run retention and refuses events on a run whose
            retention has passed (410).
    """

    max_delay_seconds: float | None = None
    dedup_window_seconds: float = 3600.0
    run_expiry: bool = False


class QueueHandler(Protocol):
    """Handles one delivery of a queue message.

    Returns ``None`` to acknowledge, or :class:`Redeliver` to have this same message
    delivered again after a delay (the World re-schedules it before it acknowledges, so a
    crash in between duplicates the message rather than losing it). Raising has the message
    redelivered after a backoff: delivery is at least once.
    """

    def __call__(
        self, message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Awaitable[Redeliver | None]:
        """Handle ``message`` (``attempt`` counts deliveries of it, from 1)."""
        ...


@runtime_checkable
class World(Protocol):
    """A durable-execution backend (Workflow DevKit 4.1 event-sourced contract, snake_case).

    Lifecycle: ``async with world:`` (or ``await world.start()`` / ``await world.aclose()``).
    ``start()`` begins the queue consumers and re-enqueues every run left ``pending`` or
    ``running`` (recovery after a crash); ``aclose()`` stops consumers, in-flight messages
    stay undelivered-and-unacknowledged (delivered again later).
    """

    capabilities: WorldCapabilities

    async def start(self) -> None:
        """Start consumers; re-enqueue runs left pending/running. Idempotent."""
        ...

    async def aclose(self) -> None:
        """Stop consumers and release connections. Idempotent."""
        ...

    async def __aenter__(self) -> Self:
        """``start()``."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """``aclose()``."""
        ...

    # ------------------------------------------------------------------ the write path

    async def events_create(self, run_id: str | None, event: NewEvent) -> EventResult:
        """Append ``event`` to the run's log and apply its transition, atomically.

        The only write path for runs, steps, hooks and waits. ``run_id`` may be ``None``
        only for ``run_created`` (the World mints one); a client-supplied id is accepted
        and a repeat with the same content is idempotent. The log of a run is dense and
        ordered: events get sequences 1, 2, 3 ... with no hole, even under concurrent
        writers. Guards are those of ``flowcraft.core.world.decide``.

        Raises:
            WorldRequestError: 400. WorldNotFoundError / HookNotFoundError: 404.
            WorldConflictError: 409. RunExpiredError: 410. TooEarlyError: 425.
            ThrottledError: 429.
        """
        ...

    # ------------------------------------------------------------------ reads

    async def runs_get(self, run_id: str, *, resolve_data: ResolveData = "all") -> WorkflowRun:
        """The run (404 if none); ``resolve_data="none"`` leaves out input and output."""
        ...

    async def runs_list(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | None = None,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[WorkflowRun]:
        """Runs in creation order, optionally of one workflow and/or status."""
        ...

    async def steps_get(
        self, run_id: str, step_id: str, *, resolve_data: ResolveData = "all"
    ) -> Step:
        """The step (404 if none)."""
        ...

    async def steps_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Step]:
        """The run's steps in creation order."""
        ...

    async def hooks_get(self, run_id: str, hook_id: str) -> Hook:
        """The hook, active or disposed (404 if none)."""
        ...

    async def hooks_get_by_token(self, token: str) -> Hook:
        """The active hook holding ``token`` (``HookNotFoundError`` if none)."""
        ...

    async def hooks_list(self, run_id: str, *, pagination: Pagination | None = None) -> Page[Hook]:
        """The run's hooks in creation order."""
        ...

    async def waits_get(self, run_id: str, wait_id: str) -> Wait:
        """The wait (404 if none)."""
        ...

    async def events_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Event]:
        """The run's events by sequence; a page's cursor continues after its last event.

        A cursor stays valid as the log grows: listing ascending from a cursor returns only
        events appended after it. An empty page (unknown run, or nothing new) is not an
        error.
        """
        ...

    # ------------------------------------------------------------------ queue

    async def queue(
        self,
        queue_name: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay_seconds: float = 0.0,
    ) -> str:
        """Enqueue ``message``; returns its message id.

        At least once: every message is eventually delivered to a handler registered for a
        prefix of ``queue_name`` (held until one is), not before ``delay_seconds``. A repeat
        of an ``idempotency_key`` within the dedup window enqueues nothing and returns the
        first message's id, whatever its payload (runtimes put fresh timestamps in repeats).
        """
        ...

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        """Deliver messages of queues whose name starts with ``queue_prefix`` to ``handler``.

        Consumers run between ``start()`` and ``aclose()``.
        """
        ...

    # ------------------------------------------------------------------ streams

    async def streams_write(self, run_id: str, name: str, chunk: bytes) -> None:
        """Append one chunk to the stream (created on first write).

        Raises:
            WorldConflictError: The stream is closed.
        """
        ...

    async def streams_write_multi(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append chunks in order, atomically (a reader sees all or none of them)."""
        ...

    async def streams_close(self, run_id: str, name: str) -> None:
        """Mark the stream ended (EOF); idempotent. Closing an unwritten stream creates it."""
        ...

    def streams_get(
        self, run_id: str, name: str, start_index: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read the stream live from ``start_index`` until EOF, waiting for new chunks.

        A negative ``start_index`` counts back from the current end (clamped at 0). The
        iterator ends at EOF; a stream that does not exist yet is waited for.
        """
        ...

    async def streams_get_chunks(
        self, run_id: str, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> StreamChunksPage:
        """A page of the chunks written so far, oldest first (a snapshot, not a live read)."""
        ...

    async def streams_get_info(self, run_id: str, name: str) -> StreamInfo:
        """The stream's last index (-1: none) and whether it is closed."""
        ...

    async def streams_list(self, run_id: str) -> list[str]:
        """The names of the run's streams, in the order they were created."""
        ...
