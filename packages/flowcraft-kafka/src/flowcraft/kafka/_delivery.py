"""One delivery from the jobs topic (``ports.Delivery``), settled once.

* ``ack``: the offset is settled; the consumer commits it with the next commit (every
  ``commit_interval``, before each hand-out, on revocation and on close). An ack lost to a
  crash before that commit delivers the message again (at-least-once).
* ``nack(delay)``: a copy is produced (to the jobs topic, or to the delay topic of ``delay``)
  carrying the delivery count in ``flowcraft-count``, acknowledged by the broker; then the
  original's offset is settled. A crash in between leaves two copies (the runtime dedupes).
* ``dead_letter(reason)``: a copy goes to the dead-letter topic with ``flowcraft-reason`` (and
  the source topic, partition and offset) in its headers; then the offset is settled.
* ``extend(seconds)``: nothing to do. A classic consumer group has no visibility timeout: a
  delivery stays with its queue object until it is settled or the object closes, however long
  the node runs (the consumer thread keeps polling, so the member stays in the group).

A delivery is settled once: later calls are no-ops. A settlement that raised leaves it
unsettled (the caller may try again).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from flowcraft.kafka._hub import Fetched

__all__ = ["KafkaDelivery", "Settler"]


class Settler(Protocol):
    """What a delivery asks its queue object to do (implemented by ``KafkaAdapter``)."""

    async def settle_ack(self, delivery: KafkaDelivery) -> None:
        """Mark the offset settled."""
        ...

    async def settle_again(self, delivery: KafkaDelivery, delay: float) -> None:
        """Produce a copy due in ``delay`` seconds, then settle the offset."""
        ...

    async def settle_dead(self, delivery: KafkaDelivery, reason: str) -> None:
        """Produce a copy to the dead-letter topic with ``reason``, then settle the offset."""
        ...


class KafkaDelivery:
    """A message of the jobs topic handed to one queue object (see the module)."""

    __slots__ = ("_settler", "_state", "fetched")

    def __init__(self, fetched: Fetched, settler: Settler) -> None:
        self.fetched = fetched
        self._settler = settler
        self._state = "open"  # -> "settling" -> "settled" (back to "open" if that failed)

    def __repr__(self) -> str:
        f = self.fetched
        return f"KafkaDelivery({self.message_id!r}, {f.topic}[{f.partition}]@{f.offset}, "\
               f"count={f.count}, {self._state})"  # fmt: skip

    @property
    def message_id(self) -> str:
        """The message's id (its Kafka key)."""
        return self.fetched.key.decode()

    @property
    def body(self) -> bytes:
        """The message body, as enqueued."""
        return self.fetched.value

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, this one included."""
        return self.fetched.count

    @property
    def settled(self) -> bool:
        """Whether ``ack``, ``nack`` or ``dead_letter`` succeeded (or is under way)."""
        return self._state != "open"

    async def ack(self) -> None:
        """Settle the offset for good."""
        if self._begin():
            await self._finish(self._settler.settle_ack(self))

    async def nack(self, delay: float = 0.0) -> None:
        """Produce the message again, due in ``delay`` seconds, and settle this delivery."""
        if self._begin():
            await self._finish(self._settler.settle_again(self, delay))

    async def extend(self, seconds: float) -> None:
        """Nothing to do: a delivery stays with its consumer until settled (see the module)."""
        del seconds

    async def dead_letter(self, reason: str) -> None:
        """Copy the message to the dead-letter topic with ``reason``, settle this delivery."""
        if self._begin():
            await self._finish(self._settler.settle_dead(self, reason))

    def _begin(self) -> bool:
        if self._state != "open":
            return False
        self._state = "settling"
        return True

    async def _finish(self, settling: Awaitable[None]) -> None:
        try:
            await settling
        except BaseException:
            self._state = "open"
            raise
        self._state = "settled"
