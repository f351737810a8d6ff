"""The write path of the run store: creating a run and saving its state, one transaction each.

:meth:`Saves.save` compare-and-sets the header (``ver = expected AND
attribute_not_exists(pending)``) in one ``TransactWriteItems`` with what the save changed
(requests built by ``_writes.py``); a save too large for one transaction goes through the
journal (``_journal.py``). A refused save commits the outcomes it carried on their own
(``_attempts.py``) and returns False; it reads the header's version from the cancellation
reason (``ALL_OLD``), rolls forward a journal a dead writer left pending, retries without its
claims when they alone refused it, and recognises by its nonce a transaction botocore retried
after it had committed. :meth:`Saves.create` writes header, records, status item and
idempotency key the same way; a refused create answers the run that exists.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs import _writes as w
from flowcraft.sqs._attempts import Attempts
from flowcraft.sqs._dynamo import READ_RETRIES, Item, Tables, n, s
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._journal import Journal, Pending, pending_attribute, pending_of
from flowcraft.sqs._outbox import OutboxBook
from flowcraft.sqs._reads import Reads
from flowcraft.sqs._removal import OutboxRemoval

__all__ = ["Saves"]


class Saves:
    """Creates and saves of runs, on the parts of one store."""

    def __init__(
        self,
        tables: Tables,
        *,
        journal: Journal,
        attempts: Attempts,
        reads: Reads,
        book: OutboxBook,
        removal: OutboxRemoval,
    ) -> None:
        self._tables = tables
        self._journal = journal
        self._attempts = attempts
        self._reads = reads
        self._book = book
        self._removal = removal
        self._status = w.StatusBook(tables.status_table)

    # ------------------------------------------------------------------ create

    async def create(
        self,
        record: ports.RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> ports.RunRecord:
        """Create the run (header, records, record, idempotency key) in one transaction."""
        now = time.time()
        stamped = replace(record, created_at=record.created_at or now, updated_at=now)
        run_id = record.run_id
        table = self._tables.context_table
        blobs = it.Blobs()
        entries = [
            it.Entry("r", key, blobs.store(it.dumps(v))) for key, v in (records or {}).items()
        ]
        nonce = uuid.uuid4().hex
        head = w.header_item(run_id, 1, header, nonce)
        fixed: list[Item] = [
            {"Put": {"TableName": table, "Item": head,
                     "ConditionExpression": "attribute_not_exists(runId)"}},
            {"Put": {"TableName": self._tables.status_table,
                     "Item": it.status_item(stamped, blobs),
                     "ConditionExpression": "attribute_not_exists(runId)"}},
        ]  # fmt: skip
        if record.idempotency_key is not None:
            idem = {
                "runId": s(f"idem#{record.idempotency_key}"),
                "sk": s("!i"),
                "run": s(run_id),
            }
            new = {"ConditionExpression": "attribute_not_exists(runId)"}
            fixed.append({"Put": {"TableName": table, "Item": idem, **new}})
        updates = [w.entry_update(table, run_id, e, 1, conditional=False) for e in entries]
        journal = w.journal_needed(fixed, updates)
        if journal:
            head["pending"] = pending_attribute(1, nonce, entries)
            await self._journal.write(run_id, 1, nonce, entries)
            updates = []
        await self._tables.write_blobs(run_id, blobs)
        for _ in range(READ_RETRIES):
            try:
                await self._tables.transact([*fixed, *updates])
                break
            except Refused as refused:
                existing = await self._existing(record, refused)
                if existing is not None:
                    return existing
                await asyncio.sleep(0.01)  # lost a race with a transaction then cancelled
        else:
            raise TransientBackendError(f"run {run_id}: could not be created (contention)")
        written = (stamped.status, it.dumps(stamped.output), it.dumps(list(stamped.errors)), now)
        self._status.remember(run_id, 1, written)
        if journal:
            await self._journal.apply(run_id, Pending(1, nonce, 0), entries, ())
        return stamped

    async def _existing(self, record: ports.RunRecord, refused: Refused) -> ports.RunRecord | None:
        """The run a refused create found (same id, or same idempotency key); None: retry."""
        for _ in range(READ_RETRIES):
            found = await self._reads.get_run(record.run_id)
            if found is None and record.idempotency_key is not None and refused.failed(2):
                idem = await self._tables.get(f"idem#{record.idempotency_key}", "!i")
                if idem is not None:
                    found = await self._reads.get_run(idem["run"]["S"])
            if found is not None:
                return found
            if refused.conflict:
                return None
            await asyncio.sleep(0.01)
        raise TransientBackendError(f"run {record.run_id}: created elsewhere but not readable")

    # ------------------------------------------------------------------ save

    async def save(
        self,
        run_id: str,
        *,
        expected_version: int,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[ports.Message],
        status: str,
        output: object = None,
        errors: Sequence[Mapping[str, object]] = (),
        outcomes: Sequence[tuple[str, bytes]] = (),
        claims: Sequence[tuple[str, str, float]] = (),
        sent: Sequence[str] = (),
    ) -> bool:
        """Compare-and-set the state in one transaction (see the module docstring)."""
        version = expected_version + 1
        now = time.time()
        table = self._tables.context_table
        blobs = it.Blobs()
        entries = w.entries(records, context_writes, outbox, version, blobs)
        outcomes = list({attempt: (attempt, o) for attempt, o in reversed(outcomes)}.values())[::-1]
        nonce = uuid.uuid4().hex
        head = w.header_item(run_id, version, header, nonce)
        condition = {
            "ConditionExpression": "ver = :e AND attribute_not_exists(pending)",
            "ExpressionAttributeValues": {":e": n(expected_version)},
        }
        put_head: Item = {"Put": {"TableName": table, "Item": head, **condition}}
        status_update, written = self._status.update(
            run_id, expected_version=expected_version, status=status, output=output,
            errors=errors, now=now, blobs=blobs,
        )  # fmt: skip
        outcome_updates = [w.outcome_update(table, run_id, a, o, blobs) for a, o in outcomes]
        claim_puts = [
            w.claim_put(table, run_id, a, owner, now + lease) for a, owner, lease in claims
        ]
        new_ids = {m.id for m in outbox}
        removal = self._book.plan(run_id, (m for m in sent if m not in new_ids))
        deletes = [w.delete(table, run_id, it.outbox_key(key)) for key in removal.deletes]
        updates = [w.entry_update(table, run_id, e, version, conditional=False) for e in entries]
        fixed = [put_head, *([status_update] if status_update else [])]
        parts = [*outcome_updates, *claim_puts, *deletes, *updates]
        journal = w.journal_needed(fixed, parts)
        later_claims: Sequence[tuple[str, str, float]] = ()
        if journal:
            if len(outcomes) > w.SMALL_PARTS:
                if not await self._attempts.commit_all(run_id, outcomes):
                    return False
                outcome_updates = []
            if len(claims) > w.SMALL_PARTS:
                later_claims, claim_puts = claims, []
            head["pending"] = pending_attribute(version, nonce, entries)
            await self._journal.write(run_id, version, nonce, entries)
            parts = [*outcome_updates, *claim_puts]
        await self._tables.write_blobs(run_id, blobs)
        if not await self._transact_save(run_id, expected_version, nonce, [*fixed, *parts]):
            if journal:
                self._tables.spawn(self._journal.drop(run_id, version, nonce))
            await self._attempts.commit_all(run_id, outcomes)
            return False
        if written is not None:
            self._status.remember(run_id, version, written)
        for attempt, outcome in outcomes:
            self._attempts.stands(run_id, attempt, outcome)
        if outbox:
            self._book.saved(run_id, it.outbox_entry(version), [m.id for m in outbox])
        if journal:
            await self._journal.apply(run_id, Pending(version, nonce, 0), entries, later_claims)
            if sent:
                await self._removal.remove({run_id: [m for m in sent if m not in new_ids]})
        else:
            self._book.done(run_id, removal)  # deleted; trims only noted (an optimisation)
        return True

    async def _transact_save(
        self, run_id: str, expected_version: int, nonce: str, transaction: list[Item]
    ) -> bool:
        """Run a save's transaction: True if it stands, False if it was refused."""
        for _ in range(3):
            try:
                await self._tables.transact(transaction)
            except Refused as refused:
                retry = await self._after_refusal(
                    run_id, expected_version, nonce, refused, transaction
                )
                if not isinstance(retry, list):
                    return retry is True
                transaction = retry
            else:
                return True
        return False

    async def _after_refusal(
        self,
        run_id: str,
        expected_version: int,
        nonce: str,
        refused: Refused,
        transaction: list[Item],
    ) -> list[Item] | bool | None:
        """What a refused save does next: a new transaction, True (it landed), None (refused)."""
        if refused.code != "TransactionCanceledException":
            return None
        if not (refused.failed(0) or refused.conflict):
            return w.without_failed_claims(refused, transaction)
        head = refused.current(0) if refused.failed(0) else None  # the answer's, or read
        head = head or await self._tables.get(run_id, it.HEADER) or {"ver": {"N": "-1"}}
        if head.get("w", {}).get("S") == nonce:
            return True  # a retry of a transaction that had committed
        pending = pending_of(head)
        if int(head["ver"]["N"]) == expected_version and pending is not None:
            await self._journal.roll_forward(run_id, pending)
            return transaction
        if not (refused.conflict and int(head["ver"]["N"]) == expected_version):
            return None
        await asyncio.sleep(0.005)  # lost a race with a transaction that was cancelled
        return transaction
