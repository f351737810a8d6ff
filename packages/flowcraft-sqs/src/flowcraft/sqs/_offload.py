"""Message bodies too big for SQS, kept in DynamoDB while their message travels.

Items (in the contexts table, key ``runId`` (S) + ``sk`` (S)): ``runId`` =
``body#<message id>#<uuid4>`` (a fresh key per enqueue: two enqueues of one id never share
chunks), ``sk`` = ``#000000``, ``#000001``, ... , ``data`` (B, at most ``CHUNK_BYTES``) and
``expires_at`` (N, epoch seconds, ``KEEP_SECONDS`` = 15 days out: longer than SQS keeps a
message, 14 days). They are written with ``BatchWriteItem`` (25 a request; unprocessed items
are retried with backoff) before the message is sent, and read back with a consistent
``Query``. Nothing deletes them when the message is acked: a duplicate delivery still in
flight may need them; they go when DynamoDB's TTL on ``expires_at`` is enabled on the table
(moto never expires items).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._codec import chunks

__all__ = ["CHUNK_BYTES", "KEEP_SECONDS", "MissingBodyError", "Offload"]

#: Bytes of body per item (DynamoDB's item limit is 400 KB).
CHUNK_BYTES = 350_000
#: How long offloaded chunks are kept (``expires_at``).
KEEP_SECONDS = 15 * 86_400
#: Items of one BatchWriteItem.
_WRITE_ITEMS = 25
#: Rounds of retrying unprocessed items before giving up.
_ROUNDS = 10


class MissingBodyError(PermanentBackendError):
    """Chunks of an offloaded body are gone (expired or deleted): the message is poison."""


def _chunk_key(index: int) -> str:
    return f"#{index:06d}"


class Offload:
    """Writes and reads offloaded bodies in ``table`` (see the module)."""

    def __init__(self, aws: Aws, table: str) -> None:
        self._aws = aws
        self.table = table

    async def store(self, message_id: str, body: bytes) -> tuple[str, int]:
        """Write ``body`` as chunks under a new key; the key and the number of chunks."""
        key = f"body#{message_id}#{uuid.uuid4()}"
        expires = str(int(time.time()) + KEEP_SECONDS)
        pieces = chunks(body, CHUNK_BYTES)
        items = [
            {
                "runId": {"S": key},
                "sk": {"S": _chunk_key(index)},
                "data": {"B": piece},
                "expires_at": {"N": expires},
            }
            for index, piece in enumerate(pieces)
        ]
        groups = [items[i : i + _WRITE_ITEMS] for i in range(0, len(items), _WRITE_ITEMS)]
        await asyncio.gather(*(self._write(group) for group in groups))
        return key, len(pieces)

    async def _write(self, items: Sequence[dict[str, Any]]) -> None:
        requests: list[dict[str, Any]] = [{"PutRequest": {"Item": item}} for item in items]
        pause = 0.05
        for _ in range(_ROUNDS):
            answer = await self._aws.dynamodb(
                "batch_write_item", RequestItems={self.table: requests}
            )
            requests = answer.get("UnprocessedItems", {}).get(self.table, [])
            if not requests:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        raise TransientBackendError(
            f"offload: {len(requests)} chunks left unprocessed by DynamoDB after {_ROUNDS} rounds"
        )

    async def fetch(self, key: str, count: int) -> bytes:
        """The body stored under ``key`` in ``count`` chunks.

        Raises:
            MissingBodyError: chunks are missing (expired or deleted).
        """
        pieces: dict[str, bytes] = {}
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "runId = :key",
            "ExpressionAttributeValues": {":key": {"S": key}},
            "ConsistentRead": True,
        }
        while True:
            page = await self._aws.dynamodb("query", **params)
            for item in page.get("Items", []):
                pieces[str(item["sk"]["S"])] = bytes(item["data"]["B"])
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        wanted = [_chunk_key(index) for index in range(count)]
        missing = [sk for sk in wanted if sk not in pieces]
        if missing:
            raise MissingBodyError(
                f"offloaded body {key}: {len(missing)} of {count} chunks missing in {self.table}"
            )
        return b"".join(pieces[sk] for sk in wanted)
