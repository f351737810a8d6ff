"""The in-memory backend as a conformance-suite factory."""

from __future__ import annotations

from flowcraft.core._distributed.memory import (
    MemoryCoordinationStore,
    MemoryJobQueue,
    MemoryRunStore,
)
from flowcraft.core.ports import Message
from flowcraft.core.testing.harness import Backend


class MemoryBackendFactory:
    """Fresh in-memory ports per namespace (a short visibility timeout for crash tests)."""

    capabilities = frozenset({"dead_letter", "delayed_delivery"})

    def __init__(self, *, visibility: float = 3.0) -> None:
        self.visibility = visibility

    async def create(self, namespace: str) -> Backend:
        """New queue, store and coordination store."""
        queue = MemoryJobQueue(visibility=self.visibility)

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
        )

    async def close(self, backend: Backend) -> None:
        """Nothing to release."""
        await backend.queue.close()

    async def destroy(self, backend: Backend) -> None:
        """Nothing to clean up."""
        await self.close(backend)
