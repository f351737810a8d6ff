"""``DynamoDbContext``: the run store (``flowcraft.core.ports.RunStore``) on DynamoDB.

Spec sheet
----------
* Tables: the contexts table holds every piece of a run as its own item (layout in
  ``_items.py``); the statuses table one item per run (its record), with the GSIs ``by_status``
  (``list_runs``) and ``by_activity`` (``stalled_runs``). Definitions in ``_schema.py``.
* ``save_state`` is ONE ``TransactWriteItems``: the header item's ``Put`` under the condition
  ``ver = expected AND attribute_not_exists(pending)`` (the compare-and-set), one ``Update``
  per changed record and per context key (a deletion writes a tombstone), one for all of the
  save's outbox messages (one item per save: a fan-out of eight writes one, and its removal
  deletes one), first-writer-wins updates of the outcomes it carries, conditional puts of its
  claims, deletes of outbox items whose messages were all sent (each once: ``_outbox.py``
  keeps what this process knows of them), and the run's status item when its status,
  output or errors changed or its ``updated`` is older than :data:`UPDATED_GRANULARITY`.
  Never a whole-context rewrite: a save costs what its decision changed.
* Large saves (more than :data:`MAX_ITEMS` items or :data:`MAX_BYTES` bytes, e.g. a 10,000-wide
  fan-out writing 20,000 records) stay atomic through a **journal**: their writes are packed
  into a few ``j#`` items first, then the same transaction sets the header's ``pending`` to
  that journal; once it committed, the writes are applied as items, each by its own
  conditional ``UpdateItem`` (``ver`` lower than the journal's, so a late applier never
  overwrites a newer value; 1 WCU each, 32 in flight, where a transaction of 100 would cost
  2 WCU each), and ``pending`` is cleared. Readers overlay
  a pending journal, and every save's condition waits for ``pending`` to clear, so a writer
  that finds one (its applier died) applies it first: the journal is the commit, applying it
  is idempotent roll-forward.
* Large values (over ``INLINE`` = 32 KB: node outputs, context values, message bodies,
  outcomes, a run's input and output) are written first as content-addressed zlib chunks
  (``z#<sha256>#<i>``, under 350 KB each) that the transaction's items reference; DynamoDB's
  400 KB item and 4 MB transaction limits never bind.
* ``create_started_run`` (``ports.RunStarter``) is ``create_run``'s one transaction at version
  2 with the first decision's records, context and outbox (one item per message: the save
  committing each message's job deletes it), through the journal when over the limits; a
  refused create or start answers the run from the cancellation's ``ALL_OLD`` items.
  ``read_result`` (``ports.ResultReader``): one page of the state query decoded for the
  header, context and named records only (``_reads.py``).
* Reads: strongly consistent (``ConsistentRead``) everywhere but the GSIs. A load is one
  ``Query`` of the run's state items, header first; an item newer than that header (a save
  committed during the read) makes it read again. ``load_state(since=v)`` reads only what
  changed after ``v`` through the local secondary index ``by_version``.
* ``claim_attempt``: the claims of one event-loop turn (a fan-out's jobs received together)
  go out as one ``TransactWriteItems`` of conditional updates (on AWS at twice the write
  units of single updates, for one round trip instead of many); the ones whose condition
  refused it are answered from the items the cancellation returns (``ALL_OLD``: BUSY, or
  DONE with the outcome; claimed again alone where it returned none), the others go
  together again.
* Outcomes carried by a refused save are committed on their own before it returns False (the
  port's rule: they stand either way); the store remembers outcomes it knows to stand, so a
  ``commit_attempt`` of one of them costs no call. A refused save reads the header's version
  from the cancellation reason (``ALL_OLD``), not with another read. A save whose
  transaction was retried by botocore after it committed (no idempotency token on emulators)
  is recognised by the nonce it wrote into the header, and reported as saved.
* Errors: botocore's ``standard`` retries handle throttling and connection errors; what is
  left leaves as ``TransientBackendError`` / ``PermanentBackendError`` (``_errors.py``).

Modules: this one is the façade and holds the two write sequences (create, save); their
requests are built by ``_writes.py``, large ones go through ``_journal.py``, refusals are
handled by ``_refusals.py``; ``_reads.py`` loads state and reads and lists runs,
``_attempts.py`` claims attempts and commits their outcomes, ``_removal.py`` removes sent
messages (planned by ``_outbox.py``), ``_dynamo.py`` does the table I/O (queries, batches,
transactions, large values).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs import _writes as w
from flowcraft.sqs._attempts import Attempts
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._dynamo import READ_RETRIES, Item, Tables, n, s
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._journal import Journal, Pending, pending_attribute
from flowcraft.sqs._outbox import OutboxBook
from flowcraft.sqs._reads import Reads
from flowcraft.sqs._refusals import Refusals
from flowcraft.sqs._removal import OutboxRemoval
from flowcraft.sqs._schema import store_tables
from flowcraft.sqs._writes import MAX_BYTES, MAX_ITEMS, UPDATED_GRANULARITY

__all__ = ["MAX_BYTES", "MAX_ITEMS", "UPDATED_GRANULARITY", "DynamoDbContext"]


class DynamoDbContext:
    """The run store of one namespace on DynamoDB (implements ``ports.RunStore``).

    Args:
        context_table_name: The contexts table (every piece of every run).
        status_table_name: The statuses table (one record per run, with the listing GSIs).
        aws: A shared :class:`~flowcraft.sqs._aws.Aws` (its owner closes it); or
        dynamodb_client, endpoint_url, region: what to build one from (then owned).
    """

    def __init__(
        self,
        *,
        context_table_name: str,
        status_table_name: str,
        aws: Aws | None = None,
        dynamodb_client: Any = None,  # noqa: ANN401 (a boto3 client)
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.context_table = context_table_name
        self.status_table = status_table_name
        self._owned = aws is None
        self._aws = aws or Aws(
            dynamodb_client=dynamodb_client, endpoint_url=endpoint_url, region=region
        )
        self._tables = Tables(self._aws, context_table_name, status_table_name)
        self._book = OutboxBook()
        self._status = w.StatusBook(status_table_name)
        self._journal = Journal(self._tables)
        self._attempts = Attempts(self._tables)
        self._reads = Reads(self._tables, self._journal, self._book)
        self._removal = OutboxRemoval(self._tables, self._book)
        self._refusals = Refusals(self._tables, self._journal, self._reads)

    # ------------------------------------------------------------------ lifecycle

    async def ensure_schema(self) -> None:
        """Create the two tables and their indexes unless they exist (idempotent)."""
        await store_tables(self._aws, self.context_table, self.status_table)

    async def close(self) -> None:
        """Finish background clean-ups; close an owned client."""
        await self._tables.drain()
        if self._owned:
            self._aws.close()

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        record: ports.RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> ports.RunRecord:
        """Create the run (header, records, record, idempotency key) in one transaction."""
        now = time.time()
        stamped = replace(record, created_at=record.created_at or now, updated_at=now)
        blobs = it.Blobs()
        entries = [
            it.Entry("r", key, blobs.store(it.dumps(v))) for key, v in (records or {}).items()
        ]
        created, _new = await self._create(stamped, 1, header, entries, blobs)
        return created

    async def create_started_run(
        self,
        record: ports.RunRecord,
        *,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context: Mapping[str, object],
        outbox: Sequence[ports.Message],
        status: str,
        output: object = None,
        errors: Sequence[Mapping[str, object]] = (),
    ) -> tuple[ports.RunRecord, bool]:
        """Create the run at version 2 with its first decision (``ports.RunStarter``).

        The same ONE transaction as ``create_run``, its items written as version 2's: the
        header, the run's status item with ``status``, ``output`` and ``errors``, the
        idempotency key, and an update per record and context key, as ``save_state`` writes
        them, and one outbox item per message (the save committing a message's job deletes
        its item whole; a start has few messages, most often one). A start beyond one
        transaction's limits goes through the journal like a large save (still one atomic
        commit). ``(existing record, False)`` if
        the run id or the idempotency key exists (read from the refusal's answer).
        """
        now = time.time()
        stamped = replace(record, status=status, output=output, errors=tuple(errors),
                          created_at=record.created_at or now, updated_at=now)  # fmt: skip
        blobs = it.Blobs()
        entries = w.entries(records, context, outbox, 2, blobs, per_message=True)
        created, new = await self._create(stamped, 2, header, entries, blobs)
        if new:  # the outbox entries' keys name their messages' places (ids deduplicated)
            unique = list({m.id: m for m in reversed(outbox)}.values())[::-1]
            for index, message in enumerate(unique):
                self._book.saved(created.run_id, it.outbox_entry(2, index), [message.id])
        return created, new

    async def _create(
        self,
        stamped: ports.RunRecord,
        version: int,
        header: Mapping[str, object],
        entries: Sequence[it.Entry],
        blobs: it.Blobs,
    ) -> tuple[ports.RunRecord, bool]:
        """Create a run whose state is ``version`` (1 or 2): the record, and if it is new.

        Items (index: what a refusal's reasons name): 0 the header, 1 the status item,
        2 the idempotency key's item, then one update per entry (or the journal's
        ``pending`` on the header when they would not fit one transaction).
        """
        run_id = stamped.run_id
        table = self._tables.context_table
        nonce = uuid.uuid4().hex
        head = w.header_item(run_id, version, header, nonce)
        fixed: list[Item] = [
            {"Put": {"TableName": table, "Item": head,
                     "ConditionExpression": "attribute_not_exists(runId)"}},
            {"Put": {"TableName": self._tables.status_table,
                     "Item": it.status_item(stamped, blobs),
                     "ConditionExpression": "attribute_not_exists(runId)"}},
        ]  # fmt: skip
        if stamped.idempotency_key is not None:
            idem = {
                "runId": s(f"idem#{stamped.idempotency_key}"),
                "sk": s("!i"),
                "run": s(run_id),
            }
            new = {"ConditionExpression": "attribute_not_exists(runId)"}
            fixed.append({"Put": {"TableName": table, "Item": idem, **new}})
        updates = [w.entry_update(table, run_id, e, version, conditional=False) for e in entries]
        journal = w.journal_needed(fixed, updates)
        if journal:
            head["pending"] = pending_attribute(version, nonce, entries)
            await self._journal.write(run_id, version, nonce, entries)
            updates = []
        await self._tables.write_blobs(run_id, blobs)
        for _ in range(READ_RETRIES):
            try:
                await self._tables.transact([*fixed, *updates])
                break
            except Refused as refused:
                current = refused.current(0) or {}
                if current.get("w", {}).get("S") == nonce:
                    break  # botocore retried a transaction that had committed
                existing = await self._refusals.existing(stamped, refused)
                if existing is not None:
                    if journal:
                        self._tables.spawn(self._journal.drop(run_id, version, nonce))
                    return existing, False
                await asyncio.sleep(0.01)  # lost a race with a transaction then cancelled
        else:
            raise TransientBackendError(f"run {run_id}: could not be created (contention)")
        written = (stamped.status, it.dumps(stamped.output), it.dumps(list(stamped.errors)),
                   stamped.updated_at)  # fmt: skip
        self._status.remember(run_id, version, written)
        if journal:
            await self._journal.apply(run_id, Pending(version, nonce, 0), entries, ())
        return stamped, True

    async def get_run(self, run_id: str) -> ports.RunRecord | None:
        """The run's record (a consistent read), or None."""
        return await self._reads.get_run(run_id)

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ports.RunPage:
        """Runs newest first (by creation time, then id), optionally of one status.

        Queries the ``by_status`` index: one partition for a status, all six merged otherwise.
        The cursor is the position of the last run returned.
        """
        return await self._reads.list_runs(status=status, limit=limit, cursor=cursor)

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Unfinished runs whose status item was last written before ``updated_before``."""
        return await self._reads.stalled_runs(updated_before=updated_before, limit=limit)

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> ports.StoredState | None:
        """The run's state as of its last save (see the port; consistent reads, retried)."""
        return await self._reads.load_state(run_id, since=since, keys=keys)

    async def read_result(self, run_id: str, keys: Collection[str]) -> ports.StoredResult | None:
        """Version, header, context and the records among ``keys`` (``ports.ResultReader``).

        One consistent ``Query`` of the run's state, header first (a newer item makes it read
        again): for a run under 1 MB of state that is the whole read, and of what it returns
        only the header, the context and the named records are decoded (their large values
        fetched; other records' and the outbox's never). A larger state is read on only to
        the end of its context, then the named records past that page by key.
        """
        return await self._reads.read_result(run_id, keys)

    async def save_state(
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
        if not await self._refusals.transact(run_id, expected_version, nonce, [*fixed, *parts]):
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

    # ------------------------------------------------------------------ outbox and attempts

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages from outboxes (one item per save). Idempotent.

        Items all of whose messages were sent are deleted (``BatchWriteItem``); items keeping
        others note the sent ones in their ``gone`` set (``UpdateItem``).

        Items this process knows (``_outbox.py``) cost no read and are deleted once; for ids it
        does not know, the run's outbox items are read first.
        """
        await self._removal.remove(sent)

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> ports.AttemptClaim:
        """Take the lease: a conditional update, with the other claims of this loop turn."""
        return await self._attempts.claim(run_id, attempt, owner, lease)

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease: one conditional ``UpdateItem``."""
        return await self._attempts.extend(run_id, attempt, owner, lease)

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer wins: one conditional ``UpdateItem``; the standing outcome back.

        An outcome this process knows to stand (it committed it, or read it) is answered
        without a call: outcomes never change once committed (e.g. the coordinator settling
        the outcomes of a refused save, which the save committed already).
        """
        return await self._attempts.commit(run_id, attempt, outcome)
