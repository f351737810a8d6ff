"""Sticky messages on SQS: the bookkeeping of one adapter's own consumer (no I/O here).

SQS cannot hand a dead consumer's messages to others by itself, so ``SqsAdapter`` honours
``enqueue(sticky=True)`` with two deliveries of one message: a *local* one, handed to its own
consumer's next ``receive`` at once, and a durable *copy* sent to the jobs queue with
``DelaySeconds`` = the sticky delay. :class:`Home` decides what a copy that comes back means:

* its local delivery was acked (``done``, remembered for ``remember`` seconds): the copy is a
  duplicate of finished work, deleted without reaching the consumer;
* its local delivery is out (being handled): the copy joins it (``join``) and is settled with
  it (deleted on ack, given back on nack, extended with it);
* its local delivery has not been taken yet, or waits out a nack: the copy replaces it
  (``deliver``), as does any copy this adapter knows nothing of (another consumer's message, or
  one whose local delivery was dropped when the consumer stopped receiving).

A copy that reaches another consumer is an ordinary delivery there (the runtime's claims make
it a duplicate of finished work, or wait for a live holder's lease). At most ``limit`` local
deliveries are unsettled at once; past that, sticky enqueues go out as plain ones.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Literal

from flowcraft.sqs._delivery import LocalDelivery

__all__ = ["Home"]

Fate = Literal["done", "join", "deliver"]


class Home:
    """Local deliveries of one adapter, and what the copies coming back mean (see module)."""

    def __init__(
        self, *, limit: int, remember: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.remember = remember
        self._clock = clock
        self._ready: collections.deque[LocalDelivery] = collections.deque()
        self._unsettled: dict[str, LocalDelivery] = {}
        self._done: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        """Local deliveries not settled yet."""
        return len(self._unsettled)

    @property
    def has_room(self) -> bool:
        """Whether another local delivery may be added."""
        return len(self._unsettled) < self.limit

    def holds(self, message_id: str) -> bool:
        """Whether a local delivery of ``message_id`` is unsettled."""
        return message_id in self._unsettled

    def add(self, local: LocalDelivery) -> None:
        """A new local delivery, ready for ``take``."""
        self._unsettled[local.message_id] = local
        self._ready.append(local)

    @property
    def ready(self) -> int:
        """Local deliveries waiting for ``take``."""
        return len(self._ready)

    def take(self, count: int) -> list[LocalDelivery]:
        """Up to ``count`` ready local deliveries, now out (handed to the consumer)."""
        taken: list[LocalDelivery] = []
        while self._ready and len(taken) < count:
            local = self._ready.popleft()
            local.state = "out"
            taken.append(local)
        return taken

    def again(self, local: LocalDelivery) -> bool:
        """A nacked local delivery is due again: ready once more (False: it was dropped)."""
        if self._unsettled.get(local.message_id) is not local or local.state != "waiting":
            return False
        local.count += 1
        local.state = "ready"
        self._ready.append(local)
        return True

    def drop_ready(self) -> list[LocalDelivery]:
        """Forget the local deliveries not taken or waiting (the consumer stops receiving).

        Their copies then reach whoever receives them.
        """
        dropped = [d for d in self._unsettled.values() if d.state in {"ready", "waiting"}]
        for local in dropped:
            self.release(local)
        return dropped

    def release(self, local: LocalDelivery) -> None:
        """``local`` is no longer this adapter's to deliver (its copy is the message now)."""
        if self._unsettled.get(local.message_id) is local:
            del self._unsettled[local.message_id]
        if local.state == "ready":
            self._ready.remove(local)
        local.state = "settled" if local.state == "settling" else local.state
        local.copy = None

    def finished(self, local: LocalDelivery) -> None:
        """``local`` was acked (or dead-lettered): its copy is dropped when it comes."""
        self.release(local)
        now = self._clock()
        self._done[local.message_id] = now + self.remember
        self._done.move_to_end(local.message_id)
        while self._done:  # oldest first: expired ones, and beyond the bound
            oldest, until = next(iter(self._done.items()))
            if until > now and len(self._done) <= 16 * self.limit:
                break
            del self._done[oldest]

    def arrived(self, message_id: str) -> tuple[Fate, LocalDelivery | None]:
        """What a copy of ``message_id`` that came back to this adapter means (see module)."""
        until = self._done.get(message_id)
        if until is not None and until > self._clock():
            return "done", None
        local = self._unsettled.get(message_id)
        if local is None:
            return "deliver", None
        if local.state in {"out", "settling"}:
            return "join", local
        self.release(local)  # ready or waiting: the copy takes its place
        return "deliver", local
