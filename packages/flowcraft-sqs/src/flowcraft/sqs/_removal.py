"""Removing sent messages from runs' outboxes: the I/O around ``_outbox.OutboxBook``.

A run's outbox is one item per save (``o#<version>``). :meth:`OutboxRemoval.remove` asks the
book which items the sent ids are in: items all of whose messages were sent are deleted
(``BatchWriteItem``, each once), items keeping others note the sent ones in their ``gone``
set (``UpdateItem``). Ids the book does not know make it read the run's outbox items first
(:meth:`OutboxRemoval.learn`); items it knows cost no read. Idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from flowcraft.sqs import _items as it
from flowcraft.sqs._dynamo import Tables, s
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._outbox import OutboxBook
from flowcraft.sqs._reads import Outbox, gone, outbox_of

__all__ = ["OutboxRemoval"]


class OutboxRemoval:
    """Deletes and trims of outbox items, planned by the book."""

    def __init__(self, tables: Tables, book: OutboxBook) -> None:
        self._tables = tables
        self._book = book

    async def remove(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages from outboxes (see the module docstring)."""
        book = self._book
        plans = {run_id: book.plan(run_id, ids) for run_id, ids in sent.items() if ids}
        unknown = [run_id for run_id, plan in plans.items() if plan.unknown]
        await asyncio.gather(*(self.learn(run_id) for run_id in unknown))
        for run_id in unknown:
            plans[run_id] = book.plan(run_id, sent[run_id])
            book.absent(run_id, plans[run_id].unknown)
        deletes = [
            {"DeleteRequest": {"Key": {"runId": s(run_id), "sk": s(it.outbox_key(key))}}}
            for run_id, plan in plans.items()
            for key in plan.deletes
        ]
        trims = [
            self._trim(run_id, key, ids)
            for run_id, plan in plans.items()
            for key, ids in plan.trims.items()
        ]
        await asyncio.gather(self._tables.batch_write(self._tables.context_table, deletes), *trims)
        for run_id, plan in plans.items():
            book.done(run_id, plan)

    async def learn(self, run_id: str) -> None:
        """Read the run's outbox items (what holds which message) into the book."""
        items = await self._tables.prefixed(run_id, it.outbox_key(""))
        outbox: Outbox = {}
        for item in items:
            value = it.stored_value(item, "d")
            if value is not None:
                outbox[item["sk"]["S"][2:]] = (value, gone(item))
        refs = {(run_id, v) for v, _ in outbox.values() if isinstance(v, it.Ref)}
        outbox_of(self._book, run_id, outbox, await self._tables.resolve(refs))

    async def _trim(self, run_id: str, key: str, ids: Sequence[str]) -> None:
        """Note sent messages of an outbox item that keeps others (gone if it is gone)."""
        with contextlib.suppress(Refused):
            await self._tables.aws.dynamodb(
                "update_item", TableName=self._tables.context_table,
                Key={"runId": s(run_id), "sk": s(it.outbox_key(key))},
                UpdateExpression="ADD gone :g", ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeValues={":g": {"SS": list(ids)}},
            )  # fmt: skip
