"""One delivery from the jobs queue (``ports.Delivery``), settled once.

* ``ack``: ``delete_message`` with the delivery's current pop receipt. A stale receipt
  (``MessageNotFound`` / ``PopReceiptMismatch``) is not an error: the message was delivered
  again (its visibility ran out) and the worker dedupes that delivery.
* ``nack(delay)``: ``update_message`` to a visibility timeout of ``ceil(delay)`` seconds (at most
  7 days). A stale receipt is not an error either: the message is back in the queue already.
* ``extend(seconds)``: ``update_message`` to ``ceil(seconds)`` from now; the answer's new pop
  receipt replaces the old one (Azure invalidates the old receipt on every update). A stale
  receipt raises ``TransientBackendError``: the message was delivered to someone else.
* ``dead_letter(reason)``: the envelope plus ``reason`` is sent to the poison queue, then the
  message is deleted (a crash in between leaves a duplicate dead letter, never a lost one).

Operations on one delivery run one at a time (a lock), so an ``ack`` that follows an
``extend`` uses the receipt the extension returned. ``delivery_count`` is Azure's
``dequeue_count``. A delivery is settled once: later calls, and ``extend`` after it, are
no-ops; a settlement that raised leaves it unsettled (the caller may try again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["AzureDelivery", "Settler"]


class Settler(Protocol):
    """What a delivery asks its adapter to do (implemented by ``AzureQueueAdapter``)."""

    async def settle_ack(self, delivery: AzureDelivery) -> None:
        """Delete the message (a stale receipt is fine)."""
        ...

    async def settle_visibility(
        self, delivery: AzureDelivery, seconds: float, *, nack: bool
    ) -> None:
        """Make the message visible in ``seconds`` (``nack``: a stale receipt is fine)."""
        ...

    async def settle_dead(self, delivery: AzureDelivery, reason: str) -> None:
        """Copy the message to the poison queue with ``reason``, then delete it."""
        ...

    def forget(self, delivery: AzureDelivery) -> None:
        """The delivery is settled: the adapter no longer gives it back on close."""
        ...


class AzureDelivery:
    """A message received from the jobs queue (see the module for each operation)."""

    __slots__ = (
        "_body",
        "_count",
        "_lock",
        "_message_id",
        "_settler",
        "_state",
        "azure_id",
        "pop_receipt",
        "text",
    )

    def __init__(
        self,
        *,
        message_id: str,
        body: bytes,
        delivery_count: int,
        azure_id: str,
        pop_receipt: str,
        text: str,
        settler: Settler,
    ) -> None:
        self._message_id = message_id
        self._body = body
        self._count = delivery_count
        self.azure_id = azure_id
        self.pop_receipt = pop_receipt
        self.text = text  # the message text as received (what a dead letter copies)
        self._settler = settler
        self._lock = asyncio.Lock()
        self._state = "open"  # -> "settled"

    def __repr__(self) -> str:
        return f"AzureDelivery({self._message_id!r}, count={self._count}, {self._state})"

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
        """Deliveries so far, this one included (Azure's ``dequeue_count``)."""
        return self._count

    @property
    def settled(self) -> bool:
        """Whether ``ack``, ``nack`` or ``dead_letter`` succeeded."""
        return self._state != "open"

    async def ack(self) -> None:
        """Delete the message for good."""
        await self._settle(lambda: self._settler.settle_ack(self))

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds."""
        await self._settle(lambda: self._settler.settle_visibility(self, delay, nack=True))

    async def extend(self, seconds: float) -> None:
        """Keep the message invisible to others for ``seconds`` from now."""
        async with self._lock:
            if self._state == "open":
                await self._settler.settle_visibility(self, seconds, nack=False)

    async def dead_letter(self, reason: str) -> None:
        """Copy the message to the poison queue with ``reason``, then delete it."""
        await self._settle(lambda: self._settler.settle_dead(self, reason))

    async def _settle(self, settling: Callable[[], Awaitable[None]]) -> None:
        async with self._lock:
            if self._state != "open":
                return
            await settling()
            self._state = "settled"
            self._settler.forget(self)
