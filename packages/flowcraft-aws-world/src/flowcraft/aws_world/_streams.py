"""Streams on DynamoDB + S3: order and EOF in DynamoDB, chunk data inline or in S3.

Per stream (partition ``<len(run id)>:<run id><name>`` of the streams table): a head item
(``sk`` 2**62, after every batch: ``next`` index, ``closed``) and one **batch** item per
write (``sk`` = the index of its first chunk; ``lens``: the chunks' lengths). A batch up to
``stream_inline_bytes`` keeps its bytes in the item (``data``); a larger one is one S3
object (``streams/<uuid>``), so the cost per chunk stays one transaction per write whatever the
chunk count (``streams_write_multi`` writes all its chunks as one batch, atomically).

A write is one ``TransactWriteItems``: the head's ``next`` moves from the index read to the
index after the batch on the condition that it is unchanged and the stream open (a new
stream's head and its entry in the run's list of names are put on ``attribute_not_exists``),
and the batch item is put. A lost condition means a concurrent writer won: read the head
again and retry. Readers tail a live stream by polling (one strongly consistent
``BatchGetItem`` of the head and the batch at their position answers when at most one write
came; else one query from their position returns the new batches and the head) with a
backoff from 20 ms up to ``stream_poll_max``, reset whenever chunks arrive; a write or close
made through the same World wakes its readers at once, and its writer remembers the stream's
next index, so consecutive writes of one process skip reading the head (the transaction's
condition still checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from flowcraft.aws_world._aws import Aws, Item
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._errors import Refused
from flowcraft.aws_world._tables import n, s
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.world import StreamChunk, StreamChunksPage, StreamInfo, WorldConflictError
from flowcraft.core.world._pages import decode_cursor, encode_cursor

#: The head's sort key: after every batch, so one query from an index returns both.
HEAD = 2**62


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
        self._known: OrderedDict[str, int] = OrderedDict()
        self._writers: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._signals: weakref.WeakValueDictionary[str, asyncio.Event] = (
            weakref.WeakValueDictionary()
        )

    def _signal(self, pk: str) -> asyncio.Event:
        """What this World's readers of ``pk`` wait on (set by this World's writes)."""
        signal = self._signals.get(pk)
        if signal is None:
            signal = self._signals[pk] = asyncio.Event()
        return signal

    def _changed(self, pk: str, next_index: int | None) -> None:
        """Remember ``pk``'s next index (``None``: closed) and wake local readers."""
        if next_index is None:
            self._known.pop(pk, None)
        else:
            self._known[pk] = next_index
            self._known.move_to_end(pk)
            while len(self._known) > 10_000:
                self._known.popitem(last=False)
        signal = self._signals.pop(pk, None)
        if signal is not None:
            signal.set()

    async def _head(self, pk: str) -> Item | None:
        found = await self._aws.dynamodb(
            "get_item", TableName=self._table, Key={"pk": s(pk), "sk": n(HEAD)}, ConsistentRead=True
        )
        item: Item | None = found.get("Item")
        return item

    # ------------------------------------------------------------------ writes

    async def write(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` as one batch (409 on a closed stream).

        Writers of one stream in this World queue on a lock, so they do not race each other
        (the transaction's condition arbitrates between processes).
        """
        pk = _partition(run_id, name)
        payload = await self._payload([bytes(c) for c in chunks])
        lock = self._writers.get(pk)
        if lock is None:
            lock = self._writers[pk] = asyncio.Lock()
        async with lock:
            await self._append(run_id, name, pk, payload, len(chunks))

    async def _append(self, run_id: str, name: str, pk: str, payload: Item, count: int) -> None:
        for attempt in range(60):
            known = self._known.get(pk)
            if known is not None:  # this World wrote last: try its index, the condition checks
                head: Item | None = {"next": n(known), "closed": {"BOOL": False}}
            else:
                head = await self._head(pk)
            if head is not None and head["closed"]["BOOL"]:
                raise WorldConflictError(
                    f"stream {name!r} of run {run_id!r} is closed", code="stream_closed"
                )
            start = 0 if head is None else int(head["next"]["N"])
            batch = {
                "Put": {"TableName": self._table, "Item": {"pk": s(pk), "sk": n(start), **payload}}
            }
            items = [*self._head_writes(run_id, name, head, start, count, closed=False), batch]
            try:
                await self._aws.dynamodb("transact_write_items", TransactItems=items)
            except Refused:
                self._known.pop(pk, None)
                if known is None:
                    await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
                continue
            self._changed(pk, start + count)
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
            self._changed(pk, None)
            return
        raise TransientBackendError(
            f"stream {name!r} of run {run_id!r}: too many concurrent writers"
        )

    # ------------------------------------------------------------------ reads

    async def _from(self, pk: str, start: int) -> tuple[Item | None, list[bytes]]:
        """The head and the committed chunks from ``start`` on, in one call (usually).

        First one ``BatchGetItem`` of the head and the batch that would start at ``start``:
        a head that has not moved past ``start`` (nothing new) or a batch that reaches it
        (one new write) is the whole answer. Otherwise one query: the head sorts after
        every batch, so it returns both. Reads are not isolated from a write's transaction,
        so either may see the head before its batch: only chunks contiguous from ``start``
        count.
        """
        got = await self._head_and_batch(pk, start)
        if got is None:  # some keys unprocessed (throttled): the query reads them all
            return await self._queried(pk, start)
        head, first = got
        written = 0 if head is None else int(head["next"]["N"])
        if written <= start:
            return head, []
        if first is not None:
            batch = await self._batch(first)
            if start + len(batch) >= written:
                return head, batch
        return await self._queried(pk, start)

    async def _head_and_batch(self, pk: str, start: int) -> tuple[Item | None, Item | None] | None:
        keys = [{"pk": s(pk), "sk": n(HEAD)}, {"pk": s(pk), "sk": n(start)}]
        found = await self._aws.dynamodb(
            "batch_get_item",
            RequestItems={self._table: {"Keys": keys, "ConsistentRead": True}},
        )
        if found.get("UnprocessedKeys"):
            return None
        by_sk = {int(item["sk"]["N"]): item for item in found["Responses"].get(self._table, [])}
        return by_sk.get(HEAD), by_sk.get(start)

    async def _queried(self, pk: str, start: int) -> tuple[Item | None, list[bytes]]:
        items = await self._query(pk, "sk >= :a", {":a": n(start)})
        head = items.pop() if items and int(items[-1]["sk"]["N"]) == HEAD else None
        written = 0 if head is None else int(head["next"]["N"])
        if start < written and (not items or int(items[0]["sk"]["N"]) > start) and start > 0:
            before = await self._query(
                pk, "sk BETWEEN :a AND :b", {":a": n(0), ":b": n(start - 1)}, last=True
            )
            items = before + items
        chunks: list[bytes] = []
        expected = start
        for item in items:
            first = int(item["sk"]["N"])
            if first > expected:
                break  # a batch not visible yet
            batch = await self._batch(item)
            chunks += batch[expected - first :]
            expected = max(expected, first + len(batch))
        return head, chunks

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
        """Chunks from ``start_index`` as they come, until EOF.

        Polls with a backoff; a write by this World wakes the reader at once.
        """
        pk = _partition(run_id, name)
        position = 0
        if start_index is not None and start_index < 0:
            head = await self._head(pk)
            position = _start(0 if head is None else int(head["next"]["N"]), start_index)
        elif start_index is not None:
            position = start_index
        pause = 0.02
        while True:
            signal = self._signal(pk)
            head, chunks = await self._from(pk, position)
            for chunk in chunks:
                yield chunk
            position += len(chunks)
            written = 0 if head is None else int(head["next"]["N"])
            if chunks:
                pause = 0.02
                continue
            if head is not None and head["closed"]["BOOL"] and position >= written:
                return
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(pause):
                    await signal.wait()
            pause = min(self._poll_max, pause * 2)

    async def page(
        self, run_id: str, name: str, limit: int, cursor: str | None
    ) -> StreamChunksPage:
        """Up to ``limit`` chunks after ``cursor`` (a snapshot)."""
        pk = _partition(run_id, name)
        start = 0 if cursor is None else decode_cursor(cursor, "chunks", "asc") + 1
        head, chunks = await self._from(pk, start)
        written = 0 if head is None else int(head["next"]["N"])
        closed = head is not None and head["closed"]["BOOL"]
        chunks = chunks[:limit]
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
