"""``WorldJobQueue``: flowcraft's job queue over a World's queue (push handlers -> pull).

A World delivers a queue's messages to a registered handler and counts on its answer: return
(ack), ``Redeliver(delay)`` (deliver again later) or raise (redelivered after a backoff). A
:class:`Dispatcher` is that handler for one namespace's job queue: it parks each delivery
until a consumer takes it with ``receive`` and settles it, then answers the World:

* ``ack`` -> return; ``nack(delay)`` -> ``Redeliver(delay)`` (the World's delay, never early);
* the **visibility timeout** is the dispatcher's: a delivery taken by ``receive`` and not
  settled within it (a dead or stuck consumer) is answered ``Redeliver(0)``, and its late
  settlement is ignored; ``extend`` pushes that deadline; ``close`` gives a consumer's
  unsettled deliveries back at once;
* ``delivery_count`` is the World's own count of deliveries of the message;
* ``dead_letter(reason)`` appends the message and the reason to the namespace's dead-letter
  stream (``flowcraft.dead-letters``), then acknowledges: the World has no dead-letter queue,
  and a stream is the World's durable, listable append-only store;
* no dedup (no idempotency key is passed: the World's dedup window would also drop the
  reconciler's deliberate re-sends; workers dedupe by claiming attempts), no sticky hint.

Parked deliveries are held by the World's handler call, so they are in flight for the World:
if the process dies, the World delivers them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Sequence

from flowcraft.core.aio import wait_event
from flowcraft.core.ports import Message, QueueCapabilities
from flowcraft.core.world._bp_journal import b64, decode, encode, unb64
from flowcraft.core.world._models import QueueMessage, Redeliver
from flowcraft.core.world._protocol import World

#: The dead-letter stream's name (on the namespace's pseudo run id).
DEAD_LETTERS = "flowcraft.dead-letters"


class _Parked:
    """One delivery of a message by the World, waiting for a consumer and its settlement."""

    __slots__ = ("answer", "count", "deadline", "message", "owner", "token")

    def __init__(self, message: Message, count: int) -> None:
        self.message = message
        self.count = count
        self.answer: asyncio.Future[Redeliver | None] = asyncio.get_running_loop().create_future()
        self.owner: WorldJobQueue | None = None
        self.token = 0
        self.deadline: asyncio.TimerHandle | None = None

    def settle(self, answer: Redeliver | None) -> None:
        """Answer the World (once)."""
        if self.deadline is not None:
            self.deadline.cancel()
        if not self.answer.done():
            self.answer.set_result(answer)


class Dispatcher:
    """The World queue handler of one namespace's jobs, shared by its consumers.

    Args:
        world: The World.
        queue_name: The World queue the jobs go to.
        dead_letter_run: The run id of the stream that keeps dead letters.
        visibility: Seconds a taken delivery may stay unsettled.
    """

    def __init__(
        self, world: World, queue_name: str, dead_letter_run: str, *, visibility: float
    ) -> None:
        self.world = world
        self.queue_name = queue_name
        self.dead_letter_run = dead_letter_run
        self.visibility = visibility
        self._ready: deque[_Parked] = deque()
        self._arrived = asyncio.Event()
        self._tokens = itertools.count(1)

    def register(self) -> None:
        """Register as the World's handler of the job queue."""
        self.world.register_handler(self.queue_name, self.handle)

    async def handle(
        self, message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        """Park the delivery until a consumer settles it (the World's queue handler)."""
        del queue_name, message_id
        body = unb64(str(message["body"]))
        parked = _Parked(Message(id=str(message["id"]), body=body), attempt)
        self._ready.append(parked)
        self._arrived.set()
        try:
            return await parked.answer
        finally:
            with contextlib.suppress(ValueError):
                self._ready.remove(parked)

    def take(self, consumer: WorldJobQueue, limit: int) -> list[_Parked]:
        """Up to ``limit`` parked deliveries, now owned by ``consumer``."""
        taken: list[_Parked] = []
        while self._ready and len(taken) < limit:
            parked = self._ready.popleft()
            if parked.answer.done():
                continue
            parked.owner, parked.token = consumer, next(self._tokens)
            self.arm(parked, self.visibility)
            taken.append(parked)
        return taken

    def arm(self, parked: _Parked, seconds: float) -> None:
        """(Re)start the delivery's visibility deadline."""
        if parked.deadline is not None:
            parked.deadline.cancel()
        parked.deadline = asyncio.get_running_loop().call_later(
            seconds, parked.settle, Redeliver(delay_seconds=0)
        )

    async def wait(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a delivery to arrive."""
        if self._ready:
            return
        self._arrived.clear()
        await wait_event(self._arrived, seconds)

    async def dead_letter(self, message: Message, reason: str) -> None:
        """Keep ``message`` and ``reason`` in the dead-letter stream."""
        entry = {"id": message.id, "body": b64(message.body), "reason": reason}
        await self.world.streams_write(self.dead_letter_run, DEAD_LETTERS, encode(entry))

    async def dead_letters(self) -> list[tuple[str, str]]:
        """``(message id, reason)`` of every dead letter, oldest first."""
        found: list[tuple[str, str]] = []
        cursor: str | None = None
        while True:
            page = await self.world.streams_get_chunks(
                self.dead_letter_run, DEAD_LETTERS, limit=1000, cursor=cursor
            )
            found += [(e["id"], e["reason"]) for e in (decode(c.data) for c in page.data)]
            cursor = page.cursor
            if not page.has_more:
                return found


class WorldDelivery:
    """One delivery from a :class:`WorldJobQueue` (see the module docstring)."""

    def __init__(self, dispatcher: Dispatcher, parked: _Parked) -> None:
        self._dispatcher = dispatcher
        self._parked = parked
        self._token = parked.token
        self.delivery_count = parked.count

    @property
    def message_id(self) -> str:
        """The message id."""
        return self._parked.message.id

    @property
    def body(self) -> bytes:
        """The body."""
        return self._parked.message.body

    def _owned(self) -> bool:
        return self._parked.token == self._token and not self._parked.answer.done()

    async def ack(self) -> None:
        """Acknowledge (the World drops the message)."""
        if self._owned():
            self._parked.settle(None)

    async def nack(self, delay: float = 0.0) -> None:
        """Have the World deliver it again after ``delay`` seconds."""
        if self._owned():
            self._parked.settle(Redeliver(delay_seconds=max(0.0, delay)))

    async def extend(self, seconds: float) -> None:
        """Stay unsettled ``seconds`` more before the delivery is given back."""
        if self._owned():
            self._dispatcher.arm(self._parked, seconds)

    async def dead_letter(self, reason: str) -> None:
        """Keep it in the dead-letter stream, then acknowledge."""
        if self._owned():
            await self._dispatcher.dead_letter(self._parked.message, reason)
            self._parked.settle(None)


class WorldJobQueue:
    """One consumer of a namespace's jobs on a World (``ports.JobQueue``)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._caps = QueueCapabilities(
            native_delay=True,
            max_delay=dispatcher.world.capabilities.max_delay_seconds,
            dead_letter=True,
            dedup=False,
            sticky=False,
        )
        self._held: set[_Parked] = set()

    @property
    def capabilities(self) -> QueueCapabilities:
        """What this queue can do."""
        return self._caps

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Queue on the World (delayed by the World; ``sticky`` is ignored)."""
        del sticky
        body: QueueMessage = {"id": message.id, "body": b64(message.body)}
        await self._dispatcher.world.queue(
            self._dispatcher.queue_name, body, delay_seconds=max(0.0, delay)
        )

    async def receive(self, max_messages: int, wait: float) -> Sequence[WorldDelivery]:
        """Up to ``max_messages`` deliveries, waiting up to ``wait`` seconds for the first."""
        deadline = time.monotonic() + wait
        while True:
            taken = self._dispatcher.take(self, max_messages)
            if taken or time.monotonic() >= deadline:
                self._held = {p for p in self._held if not p.answer.done()} | set(taken)
                return [WorldDelivery(self._dispatcher, parked) for parked in taken]
            await self._dispatcher.wait(deadline - time.monotonic())

    async def stop_receiving(self) -> None:
        """Nothing to give back: deliveries are taken only when ``receive`` returns them."""

    async def close(self) -> None:
        """Give this consumer's unsettled deliveries back to the World."""
        held, self._held = self._held, set()
        for parked in held:
            if parked.owner is self:
                parked.settle(Redeliver(delay_seconds=0))
