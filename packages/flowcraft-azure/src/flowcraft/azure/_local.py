"""Run-ahead's Azure side: what ``flowcraft.core.sticky.LocalDeliveries`` asks of the queues.

Core keeps the local deliveries and settles them (see "Sticky" in ``_queue``); this module
is what only Azure Queue Storage can say or do for them:

* :class:`Sent`: a sticky message's copy as its ``send_message`` returned it (the message id
  and pop receipt), which deletes the copy before anyone received it.
* :func:`went_on`: whether an error of a joined copy's ``extend`` says the copy went on to
  another consumer (the service refused its pop receipt: it was received again).
* :class:`LocalQueues`: deleting a copy as sent (failures logged: the copy comes back later
  and is dropped then) and sending a local delivery's message to the poison queue with its
  reason (a body too big for a message offloaded, as an enqueue's would be).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowcraft.azure._delivery import AzureDelivery
from flowcraft.azure._errors import Refused, edge
from flowcraft.azure._wire import MAX_TEXT, SIZE_MARGIN, dead_text, encode
from flowcraft.core import ports
from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.core.sticky import LocalDelivery

__all__ = ["LocalQueues", "Sent", "went_on"]

_log = logging.getLogger("flowcraft.azure")


@dataclass(frozen=True, slots=True)
class Sent:
    """A sticky message's copy as sent: what deletes it before anyone received it."""

    azure_id: str
    pop_receipt: str


def went_on(exc: Exception) -> bool:
    """Whether a copy's ``extend`` failed because it went on (a refused, stale pop receipt)."""
    return isinstance(exc, TransientBackendError) and isinstance(exc.__cause__, Refused)


class LocalQueues:
    """The jobs and poison queues' part in settling local deliveries (see the module).

    Args:
        queue_client: The jobs queue's client.
        poison_queue_client: The poison queue's client (None: local dead letters are dropped
            here, logged, and their copies go on).
        offloaded: The envelope of a message whose text is too long (its body offloaded).
    """

    def __init__(
        self,
        queue_client: Any,  # noqa: ANN401 (azure.storage.queue.aio.QueueClient)
        poison_queue_client: Any,  # noqa: ANN401
        offloaded: Callable[[ports.Message, int], Awaitable[str]],
    ) -> None:
        self._jobs, self._poison, self._offloaded = queue_client, poison_queue_client, offloaded

    async def delete_sent(self, message_id: str, sent: object) -> None:
        """Delete a copy not received yet (failures logged: it comes back, and is dropped)."""
        if not isinstance(sent, Sent):
            return
        try:
            with edge(f"delete the copy of {message_id}"):
                await self._jobs.delete_message(sent.azure_id, sent.pop_receipt)
        except (Refused, TransientBackendError, PermanentBackendError) as exc:
            _log.debug("could not delete the copy of %s at once: %s", message_id, exc)

    async def send_dead(self, delivery: LocalDelivery[AzureDelivery], reason: str) -> bool:
        """Send a local delivery's message to the poison queue (False: there is none)."""
        if self._poison is None:
            _log.error("message %s: no poison queue; dropped here, its delayed copy goes on: %s",
                       delivery.message_id, reason)  # fmt: skip
            return False
        message = ports.Message(id=delivery.message_id, body=delivery.body)
        text = encode(message.id, message.body)
        if len(text) > MAX_TEXT - SIZE_MARGIN:
            text = await self._offloaded(message, len(text))
        with edge(f"dead-letter {delivery.message_id}"):
            await self._poison.send_message(dead_text(text, message.id, reason), time_to_live=-1)
        return True
