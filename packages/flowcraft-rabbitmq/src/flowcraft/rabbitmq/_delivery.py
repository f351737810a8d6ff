"""One delivery from the jobs queue (``ports.Delivery``), and the headers the adapter uses.

Headers set by the adapter (AMQP table, integers and strings only):

* ``x-flowcraft-deliveries``: how many times the message was delivered before it was
  re-published (by ``nack`` or ``dead_letter``); absent on a fresh message.
* ``x-flowcraft-delay-ms``: the rest of a delay still to wait (see ``_delays``).
* ``x-flowcraft-reason``: why the message was dead-lettered.

``delivery_count`` = carried deliveries + 1, + 1 more if the broker flags the delivery as
``redelivered`` (a previous consumer died or closed without settling it). Classic queues only
report that flag, not how often, so repeated broker redeliveries count once.

Settling: ``ack`` sends ``basic.ack``; ``nack(delay)`` re-publishes a copy (with confirm, the
count carried in the header) and then acks; ``dead_letter`` publishes to the dead-letter queue
(with confirm) and then acks. A delivery is settled once; settling it again raises
``RuntimeError``. A delivery whose channel has died (connection lost, broker restart) cannot be
settled: the broker has already put it back, and ``ack``/``nack``/``dead_letter`` raise
``TransientBackendError`` instead of losing it silently. ``extend`` is a no-op (RabbitMQ keeps an
unacked delivery with its consumer until the channel closes or the broker's consumer timeout).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

__all__ = [
    "DEAD_REASON",
    "DELAY_REST",
    "DELIVERIES",
    "RabbitMqDelivery",
    "count_deliveries",
]

DELIVERIES = "x-flowcraft-deliveries"
DELAY_REST = "x-flowcraft-delay-ms"
DEAD_REASON = "x-flowcraft-reason"


def count_deliveries(headers: Mapping[str, object] | None, redelivered: bool) -> int:
    """This delivery's count: the carried deliveries, this one, and one broker redelivery."""
    carried = (headers or {}).get(DELIVERIES, 0)
    previous = carried if isinstance(carried, int) and carried > 0 else 0
    return previous + 1 + (1 if redelivered else 0)


class RabbitMqDelivery:
    """A message received from the jobs queue, settled exactly once."""

    __slots__ = ("_ack", "_body", "_count", "_message_id", "_republish", "_settled")

    def __init__(
        self,
        *,
        message_id: str,
        body: bytes,
        delivery_count: int,
        ack: Callable[[], None],
        republish: Callable[[str, float, Mapping[str, object]], Awaitable[None]],
    ) -> None:
        self._message_id = message_id
        self._body = body
        self._count = delivery_count
        self._ack = ack
        self._republish = republish
        self._settled = False

    @property
    def message_id(self) -> str:
        """The message's id (its dedup id)."""
        return self._message_id

    @property
    def body(self) -> bytes:
        """The message body, as enqueued."""
        return self._body

    @property
    def delivery_count(self) -> int:
        """Deliveries so far, this one included (>= 1)."""
        return self._count

    async def ack(self) -> None:
        """Remove the message for good (``basic.ack``)."""
        self._check()
        self._ack()
        self._settled = True

    async def nack(self, delay: float = 0.0) -> None:
        """Re-publish a copy deliverable after ``delay`` seconds, then ack this delivery."""
        self._check()
        await self._republish("jobs", delay, {DELIVERIES: self._count})
        self._ack()
        self._settled = True

    async def extend(self, seconds: float) -> None:
        """No-op: an unacked delivery stays with this consumer while its channel lives."""
        self._check()

    async def dead_letter(self, reason: str) -> None:
        """Publish to the dead-letter queue with ``reason``, then ack this delivery."""
        self._check()
        headers = {DELIVERIES: self._count, DEAD_REASON: reason}
        await self._republish("dead", 0.0, headers)
        self._ack()
        self._settled = True

    def _check(self) -> None:
        if self._settled:
            raise RuntimeError(f"delivery of message {self._message_id!r} is already settled")
