"""The run store's I/O on its two tables: queries, batches, transactions, large values.

:class:`Tables` owns the client (an :class:`~flowcraft.sqs._aws.Aws`), the names of the
contexts and statuses tables, and the store's background clean-ups. Its helpers page through
queries, split batch reads (100 keys) and writes (25 requests) and retry their unprocessed
parts, send transactions with a fresh ``ClientRequestToken``, write a save's large-value
chunks and read them back (``_items.py`` says how values become chunks). It knows nothing of
saves, loads or attempts: those modules build the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any

from flowcraft.core.aio import BackgroundTasks
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._errors import Refused

__all__ = ["ALL_OLD", "READ_RETRIES", "Item", "Stored", "Tables", "n", "plain", "s"]

_log = logging.getLogger("flowcraft.sqs")

Item = dict[str, Any]
Stored = bytes | it.Ref

#: Asks a refused conditional write for the current item.
ALL_OLD: Item = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
#: Reads that found a save committing under them retry this many times.
READ_RETRIES = 30


def s(value: str) -> dict[str, str]:
    """A string attribute value."""
    return {"S": value}


def n(value: float) -> dict[str, str]:
    """A number attribute value."""
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def plain(run_id: str, value: Stored | None, resolved: Mapping[tuple[str, str], bytes]) -> bytes:
    """A stored value's bytes (a reference looked up in ``resolved``; absent: ``null``)."""
    if value is None:
        return b"null"
    if isinstance(value, it.Ref):
        return resolved[(run_id, value.sha)]
    return value


class Tables:
    """The store's two tables on one client, and its background clean-ups."""

    def __init__(self, aws: Aws, context_table: str, status_table: str) -> None:
        self.aws = aws
        self.context_table = context_table
        self.status_table = status_table
        self._tasks = BackgroundTasks(_log, "background clean-up")

    # ------------------------------------------------------------------ background

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (a failure is logged; :meth:`drain` awaits it)."""
        self._tasks.spawn(work)

    async def drain(self) -> None:
        """Wait for the background clean-ups running now."""
        await self._tasks.wait(until_empty=False)

    # ------------------------------------------------------------------ requests

    async def get(self, run_id: str, sk: str) -> Item | None:
        """One item of the contexts table (a consistent read), or None."""
        got = await self.aws.dynamodb(
            "get_item", TableName=self.context_table, ConsistentRead=True,
            Key={"runId": s(run_id), "sk": s(sk)},
        )  # fmt: skip
        item: Item | None = got.get("Item")
        return item

    async def transact(self, items: Sequence[Item]) -> None:
        """One ``TransactWriteItems`` (conditional puts return the current item if refused)."""
        for part in items:
            request = next(iter(part.values()))
            if "ConditionExpression" in request and part.get("Put") is not None:
                request.setdefault("ReturnValuesOnConditionCheckFailure", "ALL_OLD")
        await self.aws.dynamodb(
            "transact_write_items", TransactItems=list(items), ClientRequestToken=uuid.uuid4().hex
        )

    async def single(self, part: Item) -> None:
        """One transaction part as a plain conditional write; a refused condition is fine."""
        ((kind, request),) = part.items()
        operation = {"Update": "update_item", "Put": "put_item", "Delete": "delete_item"}[kind]
        with contextlib.suppress(Refused):
            await self.aws.dynamodb(operation, **request)

    async def query(self, *, want: int | None = None, **params: Any) -> list[Item]:  # noqa: ANN401
        """Every item of a query (all pages), or the first ``want``."""
        found: list[Item] = []
        while True:
            if want is not None:
                params["Limit"] = want - len(found)
            page = await self.aws.dynamodb("query", **params)
            found += page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last or (want is not None and len(found) >= want):
                return found
            params["ExclusiveStartKey"] = last

    async def prefixed(self, run_id: str, prefix: str, **params: Any) -> list[Item]:  # noqa: ANN401
        """The run's items whose sort key starts with ``prefix`` (consistent, all pages)."""
        return await self.query(
            TableName=self.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND begins_with(sk, :p)",
            ExpressionAttributeValues={":r": s(run_id), ":p": s(prefix)}, **params,
        )  # fmt: skip

    async def batch_get(self, table: str, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """Items by key, consistent (100 keys per request, unprocessed keys retried)."""
        found: list[Item] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: Item = {table: {"ConsistentRead": True, "Keys": [
                {"runId": s(r), "sk": s(sk)} for r, sk in unique[start : start + 100]
            ]}}  # fmt: skip
            for attempt in range(12):
                answer = await self.aws.dynamodb("batch_get_item", RequestItems=request)
                found += answer.get("Responses", {}).get(table, [])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                await asyncio.sleep(min(1.0, 0.01 * 2**attempt))
            else:
                raise TransientBackendError(f"{table}: reads stayed unprocessed (throttled)")
        return found

    async def batch_write(self, table: str, requests: Sequence[Item]) -> None:
        """Puts and deletes, 25 per request, in parallel, unprocessed ones retried."""

        async def one(batch: list[Item]) -> None:
            pending: Item = {table: batch}
            for attempt in range(12):
                answer = await self.aws.dynamodb("batch_write_item", RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    return
                await asyncio.sleep(min(1.0, 0.01 * 2**attempt))
            raise TransientBackendError(f"{table}: writes stayed unprocessed (throttled)")

        batches = [list(requests[i : i + 25]) for i in range(0, len(requests), 25)]
        await asyncio.gather(*(one(b) for b in batches))

    async def put_items(self, items: Sequence[Item]) -> None:
        """Put items into the contexts table (:meth:`batch_write`)."""
        await self.batch_write(self.context_table, [{"PutRequest": {"Item": i}} for i in items])

    # ------------------------------------------------------------------ large values

    async def write_blobs(self, run_id: str, blobs: it.Blobs) -> None:
        """Write the chunks of a save's large values (before the items that reference them)."""
        await self.put_items(it.blob_items(run_id, blobs))

    async def resolve(self, refs: Collection[tuple[str, it.Ref]]) -> dict[tuple[str, str], bytes]:
        """The values of large-value references ``(run id, ref)``."""
        if not refs:
            return {}
        keys = [(run_id, key) for run_id, ref in refs for key in it.chunk_keys(ref)]
        items = await self.batch_get(self.context_table, keys)
        chunks = {(i["runId"]["S"], i["sk"]["S"]): bytes(i["d"]["B"]) for i in items}
        resolved: dict[tuple[str, str], bytes] = {}
        for run_id, ref in refs:
            mine = {
                key: chunks[(run_id, key)] for key in it.chunk_keys(ref) if (run_id, key) in chunks
            }
            resolved[(run_id, ref.sha)] = it.assemble(ref, mine)
        return resolved
