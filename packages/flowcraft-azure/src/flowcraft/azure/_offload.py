"""Message bodies too big for Azure Queue Storage, kept in Cosmos DB while their message travels.

Items (in the contexts container, partition key ``runId``): ``runId`` =
``body:<uuid4>`` (a fresh partition per enqueue: two enqueues of one id never share chunks),
``id`` = ``z000000``, ``z000001``, ..., ``d`` (base64 of at most :data:`CHUNK_BYTES` bytes) and
``ttl`` (:data:`KEEP_SECONDS` = 8 days: longer than the 7 days a message may stay invisible;
the container has TTL switched on without a default, so only these items expire). They are
upserted (in parallel) before the message is sent and read back with one single-partition
query. Nothing deletes them when the message is acked: a duplicate delivery still in flight
may need them; Cosmos DB's TTL removes them (the local Cosmos server never expires items).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

from flowcraft.azure._errors import edge
from flowcraft.core.errors import PermanentBackendError

__all__ = ["CHUNK_BYTES", "KEEP_SECONDS", "MissingBodyError", "Offload"]

#: Bytes of body per item (base64 adds a third; requests stay under 1 MiB, where aiohttp warns).
CHUNK_BYTES = 700_000
#: How long offloaded chunks are kept (``ttl``, seconds).
KEEP_SECONDS = 8 * 86_400


class MissingBodyError(PermanentBackendError):
    """Chunks of an offloaded body are gone (expired or deleted): the message is poison."""


class Offload:
    """Writes and reads offloaded bodies in a Cosmos DB container (see the module)."""

    def __init__(self, container: Any) -> None:  # noqa: ANN401 (an aio ContainerProxy)
        self.container = container

    async def store(self, body: bytes) -> tuple[str, int]:
        """Write ``body`` as chunks under a new key; the key and the number of chunks."""
        key = f"body:{uuid.uuid4()}"
        pieces = [body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]

        async def put(index: int, piece: bytes) -> None:
            item = {"id": f"z{index:06d}", "runId": key, "ttl": KEEP_SECONDS,
                    "d": base64.b64encode(piece).decode("ascii")}  # fmt: skip
            with edge("offload body"):
                await self.container.upsert_item(item)

        await asyncio.gather(*(put(i, p) for i, p in enumerate(pieces)))
        return key, len(pieces)

    async def fetch(self, key: str, count: int) -> bytes:
        """The body stored under ``key`` in ``count`` chunks.

        Raises:
            MissingBodyError: chunks are missing (expired or deleted).
        """
        pieces: dict[str, bytes] = {}
        with edge("read offloaded body"):
            rows = self.container.query_items(
                "SELECT c.id, c.d FROM c WHERE c.runId = @k",
                parameters=[{"name": "@k", "value": key}],
                partition_key=key,
            )
            async for row in rows:
                pieces[str(row["id"])] = base64.b64decode(str(row["d"]))
        wanted = [f"z{index:06d}" for index in range(count)]
        missing = [name for name in wanted if name not in pieces]
        if missing:
            raise MissingBodyError(
                f"offloaded body {key}: {len(missing)} of {count} chunks missing"
            )
        return b"".join(pieces[name] for name in wanted)
