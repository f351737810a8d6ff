"""Reads of the run store: run records, listings through the GSIs, and state loads.

Run records come from the statuses table (:meth:`Reads.get_run`, a consistent read), listings
from its GSIs: ``by_status`` for :meth:`Reads.list_runs` (one partition for a status, all six
merged otherwise, newest first) and ``by_activity`` for :meth:`Reads.stalled_runs`. A state
load is one ``Query`` of the run's state items, header first; an item newer than that header
(a save committed during the read) makes it read again, with jitter, up to
:data:`~flowcraft.sqs._dynamo.READ_RETRIES` times. ``since=v`` reads only what changed after
``v`` through the local secondary index ``by_version``. A pending journal is overlaid
(``_journal.py``); a full load tells the :class:`~flowcraft.sqs._outbox.OutboxBook` which
outbox item holds which message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs._dynamo import READ_RETRIES, Item, Stored, Tables, n, plain, s
from flowcraft.sqs._journal import Journal, overlay, pending_of
from flowcraft.sqs._outbox import OutboxBook

__all__ = ["Outbox", "Reads", "gone", "outbox_of", "pieces"]

#: A run's outbox items as read: key -> (stored value, ids removed since it was written).
Outbox = dict[str, tuple[Stored, frozenset[str]]]


class Reads:
    """Consistent reads of runs and their state."""

    def __init__(self, tables: Tables, journal: Journal, book: OutboxBook) -> None:
        self._tables = tables
        self._journal = journal
        self._book = book

    # ------------------------------------------------------------------ runs

    async def get_run(self, run_id: str) -> ports.RunRecord | None:
        """The run's record (a consistent read), or None."""
        got = await self._tables.aws.dynamodb(
            "get_item", TableName=self._tables.status_table, Key={"runId": s(run_id)},
            ConsistentRead=True,
        )  # fmt: skip
        if "Item" not in got:
            return None
        return await self.record_of(got["Item"])

    async def record_of(self, item: Item) -> ports.RunRecord:
        """The run record of a statuses-table item (e.g. a refused create's ``ALL_OLD``)."""
        return (await self._records([item]))[0]

    async def _records(self, items: Sequence[Item]) -> list[ports.RunRecord]:
        """Run records of status items, their large values resolved."""
        stored = [
            {name: it.stored_value(item, name) for name in ("input", "output", "errors")}
            for item in items
        ]
        refs = {
            (item["runId"]["S"], value)
            for item, values in zip(items, stored, strict=True)
            for value in values.values()
            if isinstance(value, it.Ref)
        }
        resolved = await self._tables.resolve(refs)
        records = []
        for item, values in zip(items, stored, strict=True):
            run_id = item["runId"]["S"]
            values_plain = {name: plain(run_id, value, resolved) for name, value in values.items()}
            records.append(it.run_record(item, values_plain))
        return records

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ports.RunPage:
        """Runs newest first (by creation time, then id), optionally of one status."""
        after = it.decode_cursor(cursor) if cursor is not None else None
        statuses = (status,) if status is not None else it.STATUSES
        found = await asyncio.gather(*(self._by_status(one, limit, after) for one in statuses))
        merged = sorted((item for items in found for item in items),
                        key=lambda item: item["created"]["S"], reverse=True)  # fmt: skip
        page = merged[:limit]
        more = len(merged) > limit
        runs = await self._records(page)
        next_cursor = it.encode_cursor(page[-1]["created"]["S"]) if more and page else None
        return ports.RunPage(runs=tuple(runs), cursor=next_cursor)

    async def _by_status(self, status: str, limit: int, after: str | None) -> list[Item]:
        condition = "#s = :s" + (" AND created < :c" if after is not None else "")
        values: Item = {":s": s(status)}
        if after is not None:
            values[":c"] = s(after)
        return await self._tables.query(
            TableName=self._tables.status_table, IndexName="by_status",
            KeyConditionExpression=condition, ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=values, ScanIndexForward=False, want=limit + 1,
        )  # fmt: skip

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Unfinished runs whose status item was last written before ``updated_before``."""

        async def of(status: str) -> list[Item]:
            return await self._tables.query(
                TableName=self._tables.status_table, IndexName="by_activity",
                KeyConditionExpression="active = :a AND updated < :b",
                ExpressionAttributeValues={":a": s(status), ":b": n(updated_before)},
                want=limit,
            )  # fmt: skip

        found = await asyncio.gather(*(of(one) for one in it.ACTIVE))
        merged = sorted(
            (i for items in found for i in items), key=lambda i: float(i["updated"]["N"])
        )
        return [item["runId"]["S"] for item in merged[:limit]]

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> ports.StoredState | None:
        """The run's state as of its last save (consistent reads, retried)."""
        for attempt in range(READ_RETRIES):
            loaded = await (self._load_all(run_id) if since is None
                            else self._load_since(run_id, since, keys))  # fmt: skip
            if not isinstance(loaded, bool):
                return loaded
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 (spreading retries, not a secret)
            await asyncio.sleep(jitter * min(0.1, 0.002 * 2**attempt))
        raise TransientBackendError(f"run {run_id}: its state kept changing under the read")

    async def _load_all(self, run_id: str) -> ports.StoredState | bool | None:
        items = await self._tables.query(
            TableName=self._tables.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND sk < :end",
            ExpressionAttributeValues={":r": s(run_id), ":end": s(it.STATE_END)},
        )  # fmt: skip
        if not items or items[0]["sk"]["S"] != it.HEADER:
            return None
        head = items[0]
        version = int(head["ver"]["N"])
        if any(int(i.get("ver", {"N": "0"})["N"]) > version for i in items):
            return False  # a save committed under the read
        pending = pending_of(head)
        journal = [i for i in items if pending and i["sk"]["S"].startswith(
            it.journal_prefix(pending.version, pending.nonce))]  # fmt: skip
        return await self._state(run_id, head, items[1:], journal, since=None)

    async def _load_since(
        self, run_id: str, since: int, keys: Collection[str]
    ) -> ports.StoredState | bool | None:
        # The header first: anything read after it that is newer shows a save committed since.
        tables = self._tables
        head_and_context = await tables.query(
            TableName=tables.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND sk < :end",
            ExpressionAttributeValues={":r": s(run_id), ":end": s("d")},
        )  # fmt: skip
        if not head_and_context or head_and_context[0]["sk"]["S"] != it.HEADER:
            return None
        changed, asked = await asyncio.gather(
            tables.query(
                TableName=tables.context_table, IndexName="by_version", ConsistentRead=True,
                KeyConditionExpression="runId = :r AND ver > :v",
                ExpressionAttributeValues={":r": s(run_id), ":v": n(since)},
            ),
            tables.batch_get(tables.context_table, [(run_id, it.record_key(k)) for k in keys]),
        )  # fmt: skip
        head = head_and_context[0]
        version = int(head["ver"]["N"])
        if any(int(i.get("ver", {"N": "0"})["N"]) > version for i in (*changed, *asked)):
            return False
        records = [i for i in (*asked, *changed) if i["sk"]["S"].startswith("r#")]
        pending = pending_of(head)
        journal = [] if pending is None else await self._journal.items(run_id, pending)
        return await self._state(run_id, head, [*head_and_context[1:], *records], journal,
                                 since=since)  # fmt: skip

    async def _state(
        self,
        run_id: str,
        head: Item,
        items: Iterable[Item],
        journal: Sequence[Item],
        *,
        since: int | None,
    ) -> ports.StoredState:
        records, context, outbox = pieces(items, journal, outbox=since is None)
        stored = (*records.values(), *context.values(), *(b for b, _ in outbox.values()))
        refs = {(run_id, v) for v in stored if isinstance(v, it.Ref)}
        resolved = await self._tables.resolve(refs)
        messages: tuple[ports.Message, ...] = ()
        if since is None:
            messages = outbox_of(self._book, run_id, outbox, resolved)
        return ports.StoredState(
            version=int(head["ver"]["N"]),
            header=it.loads(bytes(head["h"]["B"])),  # type: ignore[arg-type]
            records={k: it.loads(plain(run_id, v, resolved)) for k, v in records.items()},
            context={k: it.loads(plain(run_id, v, resolved)) for k, v in context.items()},
            outbox=messages,
            since=since,
        )

    # ------------------------------------------------------------------ results

    async def read_result(self, run_id: str, keys: Collection[str]) -> ports.StoredResult | None:
        """Version, header, context and the records among ``keys`` (consistent, retried)."""
        wanted = frozenset(it.record_key(k) for k in keys)
        for attempt in range(READ_RETRIES):
            read = await self._read_result(run_id, wanted)
            if not isinstance(read, bool):
                return read
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 (spreading retries, not a secret)
            await asyncio.sleep(jitter * min(0.1, 0.002 * 2**attempt))
        raise TransientBackendError(f"run {run_id}: its state kept changing under the read")

    async def _read_result(
        self, run_id: str, wanted: frozenset[str]
    ) -> ports.StoredResult | bool | None:
        # One page of the state query, header first: for a run under 1 MB of state (nearly
        # all) that is the whole read. A larger one reads on only to the end of its context
        # ("d"), then the wanted records past the page by key: never the rest.
        tables = self._tables
        page = await tables.aws.dynamodb(
            "query", TableName=tables.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND sk < :end",
            ExpressionAttributeValues={":r": s(run_id), ":end": s(it.STATE_END)},
        )  # fmt: skip
        items: list[Item] = page.get("Items", [])
        if not items or items[0]["sk"]["S"] != it.HEADER:
            return None
        head = items[0]
        pending = pending_of(head)
        prefix = it.journal_prefix(pending.version, pending.nonce) if pending else None
        journal = [i for i in items if prefix and i["sk"]["S"].startswith(prefix)]
        last = page.get("LastEvaluatedKey")
        if last is not None:
            after = str(last["sk"]["S"])
            if after < _CONTEXT_END:
                items += await tables.query(
                    TableName=tables.context_table, ConsistentRead=True,
                    KeyConditionExpression="runId = :r AND sk < :end", ExclusiveStartKey=last,
                    ExpressionAttributeValues={":r": s(run_id), ":end": s(_CONTEXT_END)},
                )  # fmt: skip
            later = sorted(k for k in wanted if k > after)
            items += await tables.batch_get(tables.context_table, [(run_id, k) for k in later])
            if pending is not None:
                journal = await self._journal.items(run_id, pending)
        version = int(head["ver"]["N"])
        if any(int(i.get("ver", {"N": "0"})["N"]) > version for i in items):
            return False  # a save committed under the read
        chosen = (
            i for i in items[1:] if not i["sk"]["S"].startswith("r#") or i["sk"]["S"] in wanted
        )
        records, context, _outbox = pieces(chosen, journal, outbox=False)
        records = {k: v for k, v in records.items() if it.record_key(k) in wanted}
        stored = (*records.values(), *context.values())
        resolved = await tables.resolve({(run_id, v) for v in stored if isinstance(v, it.Ref)})
        return ports.StoredResult(
            version=version,
            header=it.loads(bytes(head["h"]["B"])),  # type: ignore[arg-type]
            records={k: it.loads(plain(run_id, v, resolved)) for k, v in records.items()},
            context={k: it.loads(plain(run_id, v, resolved)) for k, v in context.items()},
        )


#: Upper bound (exclusive) of the header and context items' sort keys.
_CONTEXT_END = "d"


def pieces(
    items: Iterable[Item], journal: Sequence[Item], *, outbox: bool
) -> tuple[dict[str, Stored], dict[str, Stored], Outbox]:
    """Records, context and (``outbox``: else empty) outbox of state items, journal overlaid."""
    records: dict[str, Stored] = {}
    context: dict[str, Stored] = {}
    found: Outbox = {}
    for item in items:
        sk = item["sk"]["S"]
        kind, key = sk[:2], sk[2:]
        value = it.stored_value(item, "d")
        if kind == "r#" and value is not None:
            records[key] = value
        elif kind == "c#":
            if "del" in item or value is None:
                context.pop(key, None)
            else:
                context[key] = value
        elif kind == "o#" and outbox and value is not None:
            found[key] = (value, gone(item))
    payloads = (bytes(i["d"]["B"]) for i in sorted(journal, key=lambda i: i["sk"]["S"]))
    overlay(it.unpack_journal(payloads), records, context, found if outbox else None)
    return records, context, found


def outbox_of(
    book: OutboxBook, run_id: str, items: Outbox, resolved: Mapping[tuple[str, str], bytes]
) -> tuple[ports.Message, ...]:
    """The run's outbox from its items (in version order, each message once), noted."""
    messages: dict[str, ports.Message] = {}
    held: dict[str, list[str]] = {}
    for key in sorted(items):
        value, removed = items[key]
        kept = [m for m in it.unpack_outbox(plain(run_id, value, resolved))
                if m.id not in removed]  # fmt: skip
        held[key] = [m.id for m in kept]
        for message in kept:
            messages.setdefault(message.id, message)
    book.loaded(run_id, held)
    return tuple(messages.values())


def gone(item: Mapping[str, Any]) -> frozenset[str]:
    """Ids of an outbox item's messages removed since it was written."""
    return frozenset(item.get("gone", {}).get("SS", ()))
