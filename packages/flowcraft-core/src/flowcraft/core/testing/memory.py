"""The in-memory backend as a conformance-suite factory."""

from __future__ import annotations

from flowcraft.core._distributed.memory import (
    MemoryCoordinationStore,
    MemoryJobQueue,
    MemoryRunStore,
)
from flowcraft.core.backends import Backend
from flowcraft.core.ports import Message


class MemoryBackendFactory:
    """Fresh in-memory ports per namespace (a short visibility timeout for crash tests).

    ``sticky=True``: the queue declares the ``sticky`` capability, so workers run the next
    attempts of a run they decided ahead of their messages (the path real brokers with sticky
    queues take).
    """

    capabilities = frozenset(
        {
            "coordination",
            "dead_letter",
            "delayed_delivery",
            "result_notices",
            "result_reads",
            "run_notifications",
            "started_runs",
        }
    )

    def __init__(self, *, visibility: float = 3.0, sticky: bool = False) -> None:
        self.visibility = visibility
        self.sticky = sticky

    async def create(self, namespace: str) -> Backend:
        """New queue, store and coordination store."""
        queue = MemoryJobQueue(visibility=self.visibility, sticky=self.sticky)

        async def dead_letters() -> list[tuple[str, str]]:
            return [(message.id, reason) for message, reason in queue.dead_letters]

        async def inject(message: Message) -> None:
            await queue.enqueue(message)

        return Backend(
            queue=queue,
            store=MemoryRunStore(),
            coordination=MemoryCoordinationStore(),
            dead_letters=dead_letters,
            inject=inject,
            visibility_timeout=self.visibility,
        )

    async def close(self, backend: Backend) -> None:
        """Nothing to release."""
        await backend.queue.close()

    async def destroy(self, backend: Backend) -> None:
        """Nothing to clean up."""
        await self.close(backend)
