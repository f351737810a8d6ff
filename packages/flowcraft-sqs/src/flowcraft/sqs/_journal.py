"""The journal of a large save: written before its transaction, applied after it.

A save beyond one transaction's limits (``_writes.journal_needed``) packs its entries into a
few ``j#<ver>#<nonce>#<i>`` items (:meth:`Journal.write`, kept 7 days at most), and its
transaction sets the header's ``pending`` (:func:`pending_attribute`) to them: the journal is
the commit. :meth:`Journal.apply` then writes each entry as its item by a conditional update
(``ver`` lower than the journal's, so a late applier never overwrites a newer value; at most
:data:`APPLY_CONCURRENCY` in flight), clears ``pending`` and drops the journal in the
background. Applying is idempotent: a writer that finds a ``pending`` left by a dead applier
rolls it forward (:meth:`Journal.roll_forward`), and readers overlay it (:func:`overlay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.sqs import _items as it
from flowcraft.sqs._dynamo import Item, Stored, Tables, n, s
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._writes import claim_put, entry_update

__all__ = ["APPLY_CONCURRENCY", "Journal", "Pending", "overlay", "pending_attribute", "pending_of"]

#: Conditional writes of a journal's entries in flight at once.
APPLY_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class Pending:
    """A committed journal named by the header: its save's version, nonce, entry count."""

    version: int
    nonce: str
    count: int


def pending_attribute(version: int, nonce: str, entries: Sequence[it.Entry]) -> Item:
    """The header's ``pending`` attribute naming a journal."""
    return {"M": {"ver": n(version), "nonce": s(nonce), "n": n(len(entries))}}


def pending_of(head: Mapping[str, Any]) -> Pending | None:
    """The journal a header names as pending, or None."""
    pending = head.get("pending", {}).get("M")
    if not pending:
        return None
    return Pending(int(pending["ver"]["N"]), pending["nonce"]["S"], int(pending["n"]["N"]))


def overlay(
    entries: Iterable[it.Entry],
    records: dict[str, Stored],
    context: dict[str, Stored],
    outbox: dict[str, tuple[Stored, frozenset[str]]] | None,
) -> None:
    """Apply a pending journal's entries to what the items said (outbox: None to skip)."""
    for entry in entries:
        if entry.kind == "r" and entry.value is not None:
            records[entry.key] = entry.value
        elif entry.kind == "c" and entry.value is None:
            context.pop(entry.key, None)
        elif entry.kind == "c" and entry.value is not None:
            context[entry.key] = entry.value
        elif entry.kind == "o" and outbox is not None and entry.value is not None:
            outbox.setdefault(entry.key, (entry.value, frozenset()))


class Journal:
    """Journals of large saves on the contexts table."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    async def write(
        self, run_id: str, version: int, nonce: str, entries: Sequence[it.Entry]
    ) -> None:
        """Write the journal of the save making ``version`` (before its transaction)."""
        prefix = it.journal_prefix(version, nonce)
        expires = int(time.time()) + 86_400 * 7
        items = [
            {"runId": s(run_id), "sk": s(f"{prefix}{i:06d}"), "d": {"B": payload},
             "expires_at": n(expires)}
            for i, payload in enumerate(it.pack_journal(entries))
        ]  # fmt: skip
        await self._tables.put_items(items)

    async def items(self, run_id: str, pending: Pending) -> list[Item]:
        """The items of a pending journal (consistent)."""
        return await self._tables.prefixed(
            run_id, it.journal_prefix(pending.version, pending.nonce)
        )

    async def drop(self, run_id: str, version: int, nonce: str) -> None:
        """Delete a journal's items (applied, or its save was refused)."""
        keys = await self._tables.prefixed(
            run_id, it.journal_prefix(version, nonce), ProjectionExpression="runId, sk"
        )
        tables = self._tables
        await tables.batch_write(
            tables.context_table, [{"DeleteRequest": {"Key": k}} for k in keys]
        )

    async def roll_forward(self, run_id: str, pending: Pending) -> None:
        """Apply a committed journal whose writer did not finish (it died or is slow)."""
        items = await self.items(run_id, pending)
        entries = it.unpack_journal(bytes(i["d"]["B"]) for i in items)
        await self.apply(run_id, pending, entries, ())

    async def apply(
        self,
        run_id: str,
        pending: Pending,
        entries: Sequence[it.Entry],
        claims: Sequence[tuple[str, str, float]],
    ) -> None:
        """Write a committed journal's entries as items, then clear ``pending``. Idempotent."""
        table = self._tables.context_table
        updates = [
            entry_update(table, run_id, e, pending.version, conditional=True) for e in entries
        ]
        now = time.time()
        claim_puts = [claim_put(table, run_id, a, owner, now + lease) for a, owner, lease in claims]
        limit = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def write(part: Item) -> None:
            async with limit:
                await self._tables.single(part)

        await asyncio.gather(*(write(p) for p in (*updates, *claim_puts)))
        with contextlib.suppress(Refused):
            await self._tables.aws.dynamodb(
                "update_item", TableName=table,
                Key={"runId": s(run_id), "sk": s(it.HEADER)},
                UpdateExpression="REMOVE pending",
                ConditionExpression="pending.nonce = :n",
                ExpressionAttributeValues={":n": s(pending.nonce)},
            )  # fmt: skip
        self._tables.spawn(self.drop(run_id, pending.version, pending.nonce))
