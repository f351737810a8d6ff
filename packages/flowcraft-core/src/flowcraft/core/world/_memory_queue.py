"""The in-memory World's queue: delays, a dedup window, at-least-once delivery.

Messages live in a :class:`QueueStore` (shareable between World instances, so a "restarted"
World finds what the old one left); each World runs one consumer task that hands due
messages to the handler registered for the longest matching prefix. A handler that raises
gets the message again after an exponential backoff; one that answers ``Redeliver`` gets it
again after the delay it asked for; a delivery cancelled by ``aclose()`` goes back unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field

from flowcraft.core.aio import wait_event
from flowcraft.core.world._models import QueueMessage, Redeliver
from flowcraft.core.world._protocol import QueueHandler

log = logging.getLogger("flowcraft.core.world")


@dataclass(slots=True)
class Envelope:
    """One queued message and how many times it was delivered."""

    message_id: str
    queue_name: str
    message: QueueMessage
    attempt: int = 0


@dataclass(slots=True)
class QueueStore:
    """Queued messages (a heap by due time) and the idempotency keys seen."""

    heap: list[tuple[float, int, Envelope]] = field(default_factory=list)
    dedup: dict[str, tuple[str, float]] = field(default_factory=dict)
    order: itertools.count[int] = field(default_factory=itertools.count)
    wakeup: asyncio.Event | None = None

    def push(self, envelope: Envelope, delay: float) -> None:
        """Make ``envelope`` due after ``delay`` seconds."""
        heapq.heappush(self.heap, (time.monotonic() + delay, next(self.order), envelope))
        if self.wakeup is not None:
            self.wakeup.set()

    def seen(self, key: str, window: float) -> str | None:
        """The message id of ``key`` if it was used within ``window`` seconds."""
        now = time.monotonic()
        entry = self.dedup.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        if len(self.dedup) > 10_000:  # drop expired keys now and then
            self.dedup = {k: v for k, v in self.dedup.items() if v[1] > now}
        return None


@dataclass(slots=True)
class Backoff:
    """Redelivery delay after a handler raised: ``base * 2**(attempt-1)``, at most ``cap``."""

    base: float = 0.05
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds before delivery ``attempt + 1``."""
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)))


class MemoryQueue:
    """The consumer side over a :class:`QueueStore` (one per World instance)."""

    def __init__(self, store: QueueStore, *, dedup_window: float, backoff: Backoff) -> None:
        self._store = store
        self._window = dedup_window
        self._backoff = backoff
        self._handlers: list[tuple[str, QueueHandler]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], Envelope] = {}

    def enqueue(
        self, queue_name: str, message: QueueMessage, *, key: str | None, delay: float
    ) -> str:
        """Queue ``message`` (once per ``key`` within the dedup window); its message id."""
        if key is not None and (known := self._store.seen(key, self._window)) is not None:
            return known
        message_id = f"msg_{uuid.uuid4().hex}"
        if key is not None:
            self._store.dedup[key] = (message_id, time.monotonic() + self._window)
        self._store.push(Envelope(message_id, queue_name, message), max(0.0, delay))
        return message_id

    def register(self, prefix: str, handler: QueueHandler) -> None:
        """Deliver queues starting with ``prefix`` to ``handler``."""
        self._handlers.append((prefix, handler))
        self._handlers.sort(key=lambda entry: len(entry[0]), reverse=True)
        if self._store.wakeup is not None:
            self._store.wakeup.set()

    def start(self) -> None:
        """Begin consuming (idempotent)."""
        if self._consumer is None:
            self._store.wakeup = asyncio.Event()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Stop consuming; deliveries in flight go back to the queue unacknowledged."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        consumer.cancel()
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await asyncio.gather(*tasks, return_exceptions=True)

    def _handler_for(self, queue_name: str) -> QueueHandler | None:
        for prefix, handler in self._handlers:
            if queue_name.startswith(prefix):
                return handler
        return None

    async def _consume(self) -> None:
        wakeup = self._store.wakeup
        assert wakeup is not None
        while True:
            wakeup.clear()
            timeout = self._dispatch_due()
            await wait_event(wakeup, timeout)

    def _dispatch_due(self) -> float | None:
        """Start every due message that has a handler; seconds until the next one is due."""
        heap, waiting = self._store.heap, []
        now = time.monotonic()
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            handler = self._handler_for(entry[2].queue_name)
            if handler is None:
                waiting.append(entry)  # held until a handler registers
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(entry[2], handler))
            self._inflight[task] = entry[2]
            task.add_done_callback(lambda done: self._inflight.pop(done, None))
        for entry in waiting:
            heapq.heappush(heap, entry)
        future = [due for due, _, envelope in heap if self._handler_for(envelope.queue_name)]
        return max(0.0, min(future) - now) if future else None

    async def _deliver(self, envelope: Envelope, handler: QueueHandler) -> None:
        envelope.attempt += 1
        try:
            answer = await handler(
                envelope.message,
                queue_name=envelope.queue_name,
                message_id=envelope.message_id,
                attempt=envelope.attempt,
            )
        except asyncio.CancelledError:
            self._store.push(envelope, 0.0)  # not acknowledged: delivered again later
            raise
        except Exception:
            delay = self._backoff.delay(envelope.attempt)
            log.exception("queue handler failed on %s; redelivered in %.2fs", envelope, delay)
            self._store.push(envelope, delay)
            return
        if isinstance(answer, Redeliver):
            self._store.push(envelope, answer.delay_seconds)
