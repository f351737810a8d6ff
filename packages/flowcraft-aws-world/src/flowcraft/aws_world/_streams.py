"""Streams on DynamoDB + S3: order and EOF in DynamoDB, chunk data inline or in S3.

Per stream (partition ``<len(run id)>:<run id><name>`` of the streams table): a head item
(``sk`` -1: ``next`` index, ``closed``) and one **batch** item per write (``sk`` = the index
of its first chunk; ``lens``: the chunks' lengths). A batch up to ``stream_inline_bytes``
keeps its bytes in the item (``data``); a larger one is one S3 object
(``streams/<uuid>``), so the cost per chunk stays one transaction per write whatever the
chunk count (``streams_write_multi`` writes all its chunks as one batch, atomically).

A write is one ``TransactWriteItems``: the head's ``next`` moves from the index read to the
index after the batch on the condition that it is unchanged and the stream open (a new
stream's head and its entry in the run's list of names are put on ``attribute_not_exists``),
and the batch item is put. A lost condition means a concurrent writer won: read the head
again and retry. Readers tail a live stream by polling the head (strongly consistent) with a
backoff from 10 ms up to ``stream_poll_max``, reset whenever chunks arrive.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from flowcraft.aws_world._aws import Aws, Item
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._errors import Refused
from flowcraft.aws_world._tables import n, s
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.world import StreamChunk, StreamChunksPage, StreamInfo, WorldConflictError
from flowcraft.core.world._pages import decode_cursor, encode_cursor

HEAD = -1


def _partition(run_id: str, name: str) -> str:
    return f"{len(run_id)}:{run_id}{name}"


class S3Streams:
    """Every stream of one World."""

    def __init__(self, aws: Aws, config: AwsWorldConfig) -> None:
        self._aws = aws
        self._table = config.streams_table
        self._bucket = config.stream_bucket
        self._inline = config.stream_inline_bytes
        self._poll_max = config.stream_poll_max

    async def _head(self, pk: str) -> Item | None:
        found = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key={"pk": s(pk), "sk": n(HEAD)}, ConsistentRead=True
        )
        item: Item | None = found.get("Item")
        return item

    # ------------------------------------------------------------------ writes

    async def write(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` as one batch (409 on a closed stream)."""
        pk = _partition(run_id, name)
        payload = await self._payload([bytes(c) for c in chunks])
        for attempt in range(60):
            head = await self._head(pk)
            if head is not None and head["closed"]["BOOL"]:
                raise WorldConflictError(
                    f"stream {name!r} of run {run_id!r} is closed", code="stream_closed"
                )
            start = 0 if head is None else int(head["next"]["N"])
            batch = {
                "Put": {"TableName": self._table, "Item": {"pk": s(pk), "sk": n(start), **payload}}
            }
            items = [
                *self._head_writes(run_id, name, head, start, len(chunks), closed=False),
                batch,
            ]
            try:
                await self._aws.dynamodb("transact_write_items", TransactItems=items)
            except Refused:
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
                continue
            return
        raise TransientBackendError(
            f"stream {name!r} of run {run_id!r}: too many concurrent writers"
        )

    async def _payload(self, chunks: list[bytes]) -> Item:
        lens = {"L": [n(len(c)) for c in chunks]}
        data = b"".join(chunks)
        if len(data) <= self._inline:
            return {"lens": lens, "data": {"B": data}}
        key = f"streams/{uuid.uuid4().hex}"
        await self._aws.s3("put_object", Bucket=self._bucket, Key=key, Body=data)
        return {"lens": lens, "s3": s(key)}

    def _head_writes(
        self, run_id: str, name: str, head: Item | None, start: int, count: int, *, closed: bool
    ) -> list[Item]:
        pk = _partition(run_id, name)
        key = {"pk": s(pk), "sk": n(HEAD)}
        if head is None:
            stamp = time.time_ns()
            listed = {"pk": s("l#" + run_id), "sk": n(stamp), "name": s(name)}
            head_item = {
                **key,
                "next": n(start + count),
                "closed": {"BOOL": closed},
                "created": n(stamp),
            }
            return [
                _put_new(self._table, head_item),
                _put_new(self._table, listed),
            ]
        return [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": key,
                    "UpdateExpression": "SET #n = :new, closed = :closed",
                    "ConditionExpression": "#n = :old AND closed = :open",
                    "ExpressionAttributeNames": {"#n": "next"},
                    "ExpressionAttributeValues": {
                        ":new": n(start + count),
                        ":old": n(start),
                        ":closed": {"BOOL": closed},
                        ":open": {"BOOL": False},
                    },
                }
            }
        ]

    async def close(self, run_id: str, name: str) -> None:
        """Mark EOF (idempotent; creates an unwritten stream)."""
        pk = _partition(run_id, name)
        for attempt in range(60):
            head = await self._head(pk)
            if head is not None and head["closed"]["BOOL"]:
                return
            start = 0 if head is None else int(head["next"]["N"])
            items = self._head_writes(run_id, name, head, start, 0, closed=True)
            try:
                await self._aws.dynamodb("transact_write_items", TransactItems=items)
            except Refused:
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
                continue
            return
        raise TransientBackendError(
            f"stream {name!r} of run {run_id!r}: too many concurrent writers"
        )

    # ------------------------------------------------------------------ reads

    async def _chunks(self, pk: str, start: int, end: int) -> list[bytes]:
        """Chunks ``start .. end-1`` (all committed)."""
        if start >= end:
            return []
        items = await self._query(pk, "sk BETWEEN :a AND :b", {":a": n(start), ":b": n(end - 1)})
        if not items or int(items[0]["sk"]["N"]) > start:
            before = await self._query(
                pk, "sk BETWEEN :a AND :b", {":a": n(0), ":b": n(start)}, last=True
            )
            items = before + items
        out: list[bytes] = []
        for item in items:
            first = int(item["sk"]["N"])
            for offset, chunk in enumerate(await self._batch(item)):
                if start <= first + offset < end:
                    out.append(chunk)
        return out

    async def _query(
        self, pk: str, condition: str, values: dict[str, Any], *, last: bool = False
    ) -> list[Item]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND " + condition,
            "ExpressionAttributeValues": {":pk": s(pk), **values},
            "ConsistentRead": True,
        }
        if last:
            params.update(ScanIndexForward=False, Limit=1)
            found = await self._aws.dynamodb("query", **params)
            return list(found.get("Items", []))
        items: list[Item] = []
        while True:
            page = await self._aws.dynamodb("query", **params)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _batch(self, item: Item) -> list[bytes]:
        if "s3" in item:
            data = await self._aws.s3_read(self._bucket, item["s3"]["S"])
        else:
            data = bytes(item["data"]["B"])
        out, position = [], 0
        for length in (int(v["N"]) for v in item["lens"]["L"]):
            out.append(data[position : position + length])
            position += length
        return out

    async def read(self, run_id: str, name: str, start_index: int | None) -> AsyncIterator[bytes]:
        """Chunks from ``start_index`` as they come, until EOF (polling with backoff)."""
        pk = _partition(run_id, name)
        position: int | None = None
        pause = 0.01
        while True:
            head = await self._head(pk)
            written = 0 if head is None else int(head["next"]["N"])
            if position is None:
                position = _start(written, start_index)
            if written > position:
                for chunk in await self._chunks(pk, position, written):
                    yield chunk
                position, pause = written, 0.01
                continue
            if head is not None and head["closed"]["BOOL"]:
                return
            await asyncio.sleep(pause)
            pause = min(self._poll_max, pause * 1.5)

    async def page(
        self, run_id: str, name: str, limit: int, cursor: str | None
    ) -> StreamChunksPage:
        """Up to ``limit`` chunks after ``cursor`` (a snapshot)."""
        pk = _partition(run_id, name)
        head = await self._head(pk)
        written = 0 if head is None else int(head["next"]["N"])
        closed = head is not None and head["closed"]["BOOL"]
        start = 0 if cursor is None else decode_cursor(cursor, "chunks", "asc") + 1
        chunks = await self._chunks(pk, start, min(written, start + limit))
        has_more = start + len(chunks) < written
        return StreamChunksPage(
            data=[StreamChunk(index=start + i, data=c) for i, c in enumerate(chunks)],
            cursor=encode_cursor("chunks", "asc", start + len(chunks) - 1) if chunks else cursor,
            has_more=has_more,
            done=closed and not has_more,
        )

    async def info(self, run_id: str, name: str) -> StreamInfo:
        """Tail index and EOF flag."""
        head = await self._head(_partition(run_id, name))
        if head is None:
            return StreamInfo(tail_index=-1, done=False)
        return StreamInfo(tail_index=int(head["next"]["N"]) - 1, done=head["closed"]["BOOL"])

    async def names(self, run_id: str) -> list[str]:
        """The run's stream names in creation order."""
        items = await self._query("l#" + run_id, "sk >= :z", {":z": n(0)})
        return [item["name"]["S"] for item in items]


def _put_new(table: str, item: Item) -> Item:
    return {
        "Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(sk)"}
    }


def _start(length: int, start_index: int | None) -> int:
    if start_index is None:
        return 0
    if start_index < 0:
        return max(0, length + start_index)
    return start_index
