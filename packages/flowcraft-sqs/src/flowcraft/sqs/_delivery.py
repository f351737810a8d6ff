"""One delivery from the SQS jobs queue (``ports.Delivery``), settled once.

* ``ack``: ``DeleteMessage`` (batched with the other acks of the same event-loop turn into
  ``DeleteMessageBatch``). A stale receipt handle is not an error: the message was already
  delivered again (its visibility ran out) and the worker dedupes that delivery.
* ``nack(delay)``: ``ChangeMessageVisibility`` to ``ceil(delay)`` seconds (0..43,200, and no
  further than 12 hours after the receive: SQS refuses more). A stale receipt handle is not
  an error either: the message is back in the queue already.
* ``extend(seconds)``: ``ChangeMessageVisibility`` to ``ceil(seconds)`` from now (also within
  those 12 hours). A stale receipt handle raises: the message was delivered to someone else
  meanwhile.
* ``dead_letter(reason)``: the same body and attributes plus ``flowcraft-reason`` are sent to
  the dead-letter queue, then the message is deleted from the jobs queue (a crash in between
  leaves a duplicate dead letter, never a lost one). Without a dead-letter queue, the message
  is made invisible for 12 hours instead (the queue's redrive policy, if any, moves it on
  after its ``maxReceiveCount`` receives) and the reason is logged.

``delivery_count`` is SQS's ``ApproximateReceiveCount``. A delivery is settled once (by
``ack``, ``nack`` or ``dead_letter``): later calls, and ``extend`` after it, are no-ops. A
settlement that raised leaves the delivery unsettled (the caller may try again). Once the
adapter is closed (which made the message visible again), settling raises
``TransientBackendError``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

__all__ = ["Settler", "SqsDelivery"]


class Settler(Protocol):
    """What a delivery asks its adapter to do (implemented by ``SqsAdapter``)."""

    async def settle_ack(self, delivery: SqsDelivery) -> None:
        """Delete the message from the jobs queue (a stale handle is fine)."""
        ...

    async def settle_visibility(self, delivery: SqsDelivery, seconds: float, *, nack: bool) -> None:
        """Make the message visible in ``seconds`` (``nack``: a stale handle is fine)."""
        ...

    async def settle_dead(self, delivery: SqsDelivery, reason: str) -> None:
        """Copy the message to the dead-letter queue with ``reason``, then delete it."""
        ...

    def forget(self, delivery: SqsDelivery) -> None:
        """The delivery is settled: the adapter no longer gives it back on close."""
        ...


class SqsDelivery:
    """A message received from the jobs queue (see the module for each operation)."""

    __slots__ = (
        "_body",
        "_count",
        "_message_id",
        "_settler",
        "_state",
        "receipt_handle",
        "received_at",
        "wire_attributes",
        "wire_body",
    )

    def __init__(
        self,
        *,
        message_id: str,
        body: bytes,
        delivery_count: int,
        receipt_handle: str,
        received_at: float,
        wire_body: str,
        wire_attributes: dict[str, dict[str, Any]],
        settler: Settler,
    ) -> None:
        self._message_id = message_id
        self._body = body
        self._count = delivery_count
        self.receipt_handle = receipt_handle
        self.received_at = received_at  # time.monotonic() of the receive
        self.wire_body = wire_body
        self.wire_attributes = wire_attributes
        self._settler = settler
        self._state = "open"  # -> "settling" -> "settled" (back to "open" if that failed)

    def __repr__(self) -> str:
        return f"SqsDelivery({self._message_id!r}, count={self._count}, {self._state})"

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
        """Deliveries so far, this one included (SQS's ``ApproximateReceiveCount``)."""
        return self._count

    @property
    def settled(self) -> bool:
        """Whether ``ack``, ``nack`` or ``dead_letter`` succeeded (or is under way)."""
        return self._state != "open"

    async def ack(self) -> None:
        """Delete the message for good."""
        if self._begin():
            await self._finish(self._settler.settle_ack(self))

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds."""
        if self._begin():
            await self._finish(self._settler.settle_visibility(self, delay, nack=True))

    async def extend(self, seconds: float) -> None:
        """Keep the message invisible to others for ``seconds`` from now."""
        if self._state == "open":
            await self._settler.settle_visibility(self, seconds, nack=False)

    async def dead_letter(self, reason: str) -> None:
        """Copy the message to the dead-letter queue with ``reason``, then delete it."""
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
        self._settler.forget(self)
