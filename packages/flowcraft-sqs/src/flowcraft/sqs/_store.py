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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._outbox import OutboxBook
from flowcraft.sqs._schema import store_tables
from flowcraft.sqs._turns import TurnBatch

__all__ = ["DynamoDbContext"]

_log = logging.getLogger("flowcraft.sqs")

#: Items one ``TransactWriteItems`` may hold (DynamoDB's limit is 100).
MAX_ITEMS = 100
#: Bytes one transaction may carry before a save goes through the journal (limit: 4 MB).
MAX_BYTES = 3_500_000
#: A run's status item is rewritten by saves that change nothing of it at most this often.
UPDATED_GRANULARITY = 1.0
#: Outcomes and claims a journalled save keeps in its transaction (the rest: before / after).
_SMALL_PARTS = 40
#: An attempt without a committed outcome.
_NO_OUTCOME = "attribute_not_exists(outcome) AND attribute_not_exists(outcome_ref)"
#: Conditional writes of a journal's entries in flight at once.
_APPLY_CONCURRENCY = 32
#: Asks a refused conditional write for the current item.
_ALL_OLD: Item = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
#: Reads that found a save committing under them retry this many times.
_READ_RETRIES = 30

Item = dict[str, Any]
_Stored = bytes | it.Ref


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


@dataclass(slots=True)
class _Written:
    """What this process last wrote to a run's status item."""

    version: int
    status: str
    output: bytes
    errors: bytes
    updated: float


@dataclass(frozen=True, slots=True, eq=False)
class _Claim:
    run_id: str
    attempt: str
    owner: str
    lease: float


@dataclass(frozen=True, slots=True)
class _Pending:
    version: int
    nonce: str
    count: int


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
        self._written: OrderedDict[str, _Written] = OrderedDict()
        self._outbox = OutboxBook()
        self._outcomes: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # known to stand
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims: TurnBatch[_Claim, ports.AttemptClaim] = TurnBatch(
            self._claim_many, limit=MAX_ITEMS, spawn=self._spawn
        )

    # ------------------------------------------------------------------ lifecycle

    async def ensure_schema(self) -> None:
        """Create the two tables and their indexes unless they exist (idempotent)."""
        await store_tables(self._aws, self.context_table, self.status_table)

    async def close(self) -> None:
        """Finish background clean-ups; close an owned client."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owned:
            self._aws.close()

    def _spawn(self, work: Any) -> None:  # noqa: ANN401 (a coroutine)
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("background clean-up failed: %s", task.exception())

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
        run_id = record.run_id
        blobs = it.Blobs()
        entries = [
            it.Entry("r", key, blobs.store(it.dumps(v))) for key, v in (records or {}).items()
        ]
        nonce = uuid.uuid4().hex
        head = self._header_item(run_id, 1, header, nonce)
        fixed: list[Item] = [
            {"Put": {"TableName": self.context_table, "Item": head,
                     "ConditionExpression": "attribute_not_exists(runId)"}},
            {"Put": {"TableName": self.status_table, "Item": it.status_item(stamped, blobs),
                     "ConditionExpression": "attribute_not_exists(runId)"}},
        ]  # fmt: skip
        if record.idempotency_key is not None:
            idem = {
                "runId": _s(f"idem#{record.idempotency_key}"),
                "sk": _s("!i"),
                "run": _s(run_id),
            }
            new = {"ConditionExpression": "attribute_not_exists(runId)"}
            fixed.append({"Put": {"TableName": self.context_table, "Item": idem, **new}})
        updates = [self._entry_update(run_id, e, 1, conditional=False) for e in entries]
        journal = self._journal_needed(fixed, updates)
        if journal:
            head["pending"] = self._pending_attribute(1, nonce, entries)
            await self._write_journal(run_id, 1, nonce, entries)
            updates = []
        await self._write_blobs(run_id, blobs)
        for _ in range(_READ_RETRIES):
            try:
                await self._transact([*fixed, *updates])
                break
            except Refused as refused:
                existing = await self._existing(record, refused)
                if existing is not None:
                    return existing
                await asyncio.sleep(0.01)  # lost a race with a transaction then cancelled
        else:
            raise TransientBackendError(f"run {run_id}: could not be created (contention)")
        written = (stamped.status, it.dumps(stamped.output), it.dumps(list(stamped.errors)), now)
        self._remember(run_id, 1, written)
        if journal:
            await self._apply(run_id, _Pending(1, nonce, 0), entries, ())
        return stamped

    async def _existing(self, record: ports.RunRecord, refused: Refused) -> ports.RunRecord | None:
        """The run a refused create found (same id, or same idempotency key); None: retry."""
        for _ in range(_READ_RETRIES):
            found = await self.get_run(record.run_id)
            if found is None and record.idempotency_key is not None and refused.failed(2):
                idem = await self._aws.dynamodb(
                    "get_item", TableName=self.context_table, ConsistentRead=True,
                    Key={"runId": _s(f"idem#{record.idempotency_key}"), "sk": _s("!i")},
                )  # fmt: skip
                if "Item" in idem:
                    found = await self.get_run(idem["Item"]["run"]["S"])
            if found is not None:
                return found
            if refused.conflict:
                return None
            await asyncio.sleep(0.01)
        raise TransientBackendError(f"run {record.run_id}: created elsewhere but not readable")

    async def get_run(self, run_id: str) -> ports.RunRecord | None:
        """The run's record (a consistent read), or None."""
        got = await self._aws.dynamodb(
            "get_item", TableName=self.status_table, Key={"runId": _s(run_id)}, ConsistentRead=True
        )
        if "Item" not in got:
            return None
        return (await self._records([got["Item"]]))[0]

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
        resolved = await self._resolve(refs)
        records = []
        for item, values in zip(items, stored, strict=True):
            plain = {
                name: self._plain(item["runId"]["S"], value, resolved)
                for name, value in values.items()
            }
            records.append(it.run_record(item, plain))
        return records

    @staticmethod
    def _plain(
        run_id: str, value: _Stored | None, resolved: Mapping[tuple[str, str], bytes]
    ) -> bytes:
        if value is None:
            return b"null"
        if isinstance(value, it.Ref):
            return resolved[(run_id, value.sha)]
        return value

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ports.RunPage:
        """Runs newest first (by creation time, then id), optionally of one status.

        Queries the ``by_status`` index: one partition for a status, all six merged otherwise.
        The cursor is the position of the last run returned.
        """
        after = it.decode_cursor(cursor) if cursor is not None else None
        statuses = (status,) if status is not None else it.STATUSES
        found = await asyncio.gather(*(self._by_status(s, limit, after) for s in statuses))
        merged = sorted((item for items in found for item in items),
                        key=lambda item: item["created"]["S"], reverse=True)  # fmt: skip
        page = merged[:limit]
        more = len(merged) > limit
        runs = await self._records(page)
        next_cursor = it.encode_cursor(page[-1]["created"]["S"]) if more and page else None
        return ports.RunPage(runs=tuple(runs), cursor=next_cursor)

    async def _by_status(self, status: str, limit: int, after: str | None) -> list[Item]:
        condition = "#s = :s" + (" AND created < :c" if after is not None else "")
        values: Item = {":s": _s(status)}
        if after is not None:
            values[":c"] = _s(after)
        return await self._query(
            TableName=self.status_table, IndexName="by_status", KeyConditionExpression=condition,
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=values,
            ScanIndexForward=False, want=limit + 1,
        )  # fmt: skip

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Unfinished runs whose status item was last written before ``updated_before``."""

        async def of(status: str) -> list[Item]:
            return await self._query(
                TableName=self.status_table, IndexName="by_activity",
                KeyConditionExpression="active = :a AND updated < :b",
                ExpressionAttributeValues={":a": _s(status), ":b": _n(updated_before)},
                want=limit,
            )  # fmt: skip

        found = await asyncio.gather(*(of(s) for s in it.ACTIVE))
        merged = sorted(
            (i for items in found for i in items), key=lambda i: float(i["updated"]["N"])
        )
        return [item["runId"]["S"] for item in merged[:limit]]

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> ports.StoredState | None:
        """The run's state as of its last save (see the port; consistent reads, retried)."""
        for attempt in range(_READ_RETRIES):
            loaded = await (self._load_all(run_id) if since is None
                            else self._load_since(run_id, since, keys))  # fmt: skip
            if not isinstance(loaded, bool):
                return loaded
            jitter = random.uniform(0.5, 1.0)  # noqa: S311 (spreading retries, not a secret)
            await asyncio.sleep(jitter * min(0.1, 0.002 * 2**attempt))
        raise TransientBackendError(f"run {run_id}: its state kept changing under the read")

    async def _load_all(self, run_id: str) -> ports.StoredState | bool | None:
        items = await self._query(
            TableName=self.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND sk < :end",
            ExpressionAttributeValues={":r": _s(run_id), ":end": _s(it.STATE_END)},
        )  # fmt: skip
        if not items or items[0]["sk"]["S"] != it.HEADER:
            return None
        head = items[0]
        version = int(head["ver"]["N"])
        if any(int(i.get("ver", {"N": "0"})["N"]) > version for i in items):
            return False  # a save committed under the read
        pending = self._pending_of(head)
        journal = [i for i in items if pending and i["sk"]["S"].startswith(
            it.journal_prefix(pending.version, pending.nonce))]  # fmt: skip
        return await self._state(run_id, head, items[1:], journal, since=None)

    async def _load_since(
        self, run_id: str, since: int, keys: Collection[str]
    ) -> ports.StoredState | bool | None:
        # The header first: anything read after it that is newer shows a save committed since.
        head_and_context = await self._query(
            TableName=self.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND sk < :end",
            ExpressionAttributeValues={":r": _s(run_id), ":end": _s("d")},
        )  # fmt: skip
        if not head_and_context or head_and_context[0]["sk"]["S"] != it.HEADER:
            return None
        changed, asked = await asyncio.gather(
            self._query(
                TableName=self.context_table, IndexName="by_version", ConsistentRead=True,
                KeyConditionExpression="runId = :r AND ver > :v",
                ExpressionAttributeValues={":r": _s(run_id), ":v": _n(since)},
            ),
            self._batch_get(self.context_table, [(run_id, it.record_key(k)) for k in keys]),
        )  # fmt: skip
        head = head_and_context[0]
        version = int(head["ver"]["N"])
        if any(int(i.get("ver", {"N": "0"})["N"]) > version for i in (*changed, *asked)):
            return False
        records = [i for i in (*asked, *changed) if i["sk"]["S"].startswith("r#")]
        pending = self._pending_of(head)
        journal: list[Item] = []
        if pending is not None:
            journal = await self._query(
                TableName=self.context_table, ConsistentRead=True,
                KeyConditionExpression="runId = :r AND begins_with(sk, :j)",
                ExpressionAttributeValues={
                    ":r": _s(run_id), ":j": _s(it.journal_prefix(pending.version, pending.nonce))
                },
            )  # fmt: skip
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
        records: dict[str, _Stored] = {}
        context: dict[str, _Stored] = {}
        outbox: dict[str, tuple[_Stored, frozenset[str]]] = {}
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
            elif kind == "o#" and since is None and value is not None:
                outbox[key] = (value, _gone(item))
        payloads = (bytes(i["d"]["B"]) for i in sorted(journal, key=lambda i: i["sk"]["S"]))
        _overlay(it.unpack_journal(payloads), records, context, outbox if since is None else None)
        stored = (*records.values(), *context.values(), *(b for b, _ in outbox.values()))
        refs = {(run_id, v) for v in stored if isinstance(v, it.Ref)}
        resolved = await self._resolve(refs)
        messages: tuple[ports.Message, ...] = ()
        if since is None:
            messages = self._outbox_of(run_id, outbox, resolved)
        return ports.StoredState(
            version=int(head["ver"]["N"]),
            header=it.loads(bytes(head["h"]["B"])),  # type: ignore[arg-type]
            records={k: it.loads(self._plain(run_id, v, resolved)) for k, v in records.items()},
            context={k: it.loads(self._plain(run_id, v, resolved)) for k, v in context.items()},
            outbox=messages,
            since=since,
        )

    def _outbox_of(
        self,
        run_id: str,
        items: Mapping[str, tuple[_Stored, frozenset[str]]],
        resolved: Mapping[tuple[str, str], bytes],
    ) -> tuple[ports.Message, ...]:
        """The run's outbox from its items (in version order, each message once), noted."""
        messages: dict[str, ports.Message] = {}
        held: dict[str, list[str]] = {}
        for key in sorted(items):
            value, gone = items[key]
            kept = [m for m in it.unpack_outbox(self._plain(run_id, value, resolved))
                    if m.id not in gone]  # fmt: skip
            held[key] = [m.id for m in kept]
            for message in kept:
                messages.setdefault(message.id, message)
        self._outbox.loaded(run_id, held)
        return tuple(messages.values())

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
        blobs = it.Blobs()
        entries = self._entries(records, context_writes, outbox, version, blobs)
        outcomes = list({attempt: (attempt, o) for attempt, o in reversed(outcomes)}.values())[::-1]
        nonce = uuid.uuid4().hex
        head = self._header_item(run_id, version, header, nonce)
        condition = {
            "ConditionExpression": "ver = :e AND attribute_not_exists(pending)",
            "ExpressionAttributeValues": {":e": _n(expected_version)},
        }
        put_head: Item = {"Put": {"TableName": self.context_table, "Item": head, **condition}}
        status_update, written = self._status_update(
            run_id, expected_version=expected_version, status=status, output=output,
            errors=errors, now=now, blobs=blobs,
        )  # fmt: skip
        outcome_updates = [self._outcome_update(run_id, a, o, blobs) for a, o in outcomes]
        claim_puts = [self._claim_put(run_id, a, owner, now + lease) for a, owner, lease in claims]
        new_ids = {m.id for m in outbox}
        removal = self._outbox.plan(run_id, (m for m in sent if m not in new_ids))
        deletes = [self._delete(run_id, it.outbox_key(key)) for key in removal.deletes]
        updates = [self._entry_update(run_id, e, version, conditional=False) for e in entries]
        fixed = [put_head, *([status_update] if status_update else [])]
        parts = [*outcome_updates, *claim_puts, *deletes, *updates]
        journal = self._journal_needed(fixed, parts)
        later_claims: Sequence[tuple[str, str, float]] = ()
        if journal:
            if len(outcomes) > _SMALL_PARTS:
                if not await self._commit_all(run_id, outcomes):
                    return False
                outcome_updates = []
            if len(claims) > _SMALL_PARTS:
                later_claims, claim_puts = claims, []
            head["pending"] = self._pending_attribute(version, nonce, entries)
            await self._write_journal(run_id, version, nonce, entries)
            parts = [*outcome_updates, *claim_puts]
        await self._write_blobs(run_id, blobs)
        if not await self._transact_save(run_id, expected_version, nonce, [*fixed, *parts]):
            if journal:
                self._spawn(self._drop_journal(run_id, version, nonce))
            await self._commit_all(run_id, outcomes)
            return False
        if written is not None:
            self._remember(run_id, version, written)
        for attempt, outcome in outcomes:
            self._stands(run_id, attempt, outcome)
        if outbox:
            self._outbox.saved(run_id, it.outbox_entry(version), [m.id for m in outbox])
        if journal:
            await self._apply(run_id, _Pending(version, nonce, 0), entries, later_claims)
            if sent:
                await self.remove_outbox({run_id: [m for m in sent if m not in new_ids]})
        else:
            self._outbox.done(run_id, removal)  # deleted; trims only noted (an optimisation)
        return True

    async def _transact_save(
        self, run_id: str, expected_version: int, nonce: str, transaction: list[Item]
    ) -> bool:
        """Run a save's transaction: True if it stands, False if it was refused."""
        for _ in range(3):
            try:
                await self._transact(transaction)
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
            return _without_failed_claims(refused, transaction)
        head = refused.current(0) if refused.failed(0) else None  # the answer's, or read
        head = head or await self._head(run_id) or {"ver": {"N": "-1"}}
        if head.get("w", {}).get("S") == nonce:
            return True  # a retry of a transaction that had committed
        pending = self._pending_of(head)
        if int(head["ver"]["N"]) == expected_version and pending is not None:
            await self._roll_forward(run_id, pending)
            return transaction
        if not (refused.conflict and int(head["ver"]["N"]) == expected_version):
            return None
        await asyncio.sleep(0.005)  # lost a race with a transaction that was cancelled
        return transaction

    async def _head(self, run_id: str) -> Item | None:
        got = await self._aws.dynamodb(
            "get_item", TableName=self.context_table, ConsistentRead=True,
            Key={"runId": _s(run_id), "sk": _s(it.HEADER)},
        )  # fmt: skip
        item: Item | None = got.get("Item")
        return item

    # ------------------------------------------------------------------ items of a save

    def _header_item(
        self, run_id: str, version: int, header: Mapping[str, object], nonce: str
    ) -> Item:
        data = it.dumps(header)
        if len(data) > it.CHUNK:
            raise ValueError(f"run {run_id}: a header of {len(data)} bytes (at most {it.CHUNK})")
        return {"runId": _s(run_id), "sk": _s(it.HEADER), "ver": _n(version),
                "h": {"B": data}, "w": _s(nonce)}  # fmt: skip

    @staticmethod
    def _entries(
        records: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[ports.Message],
        version: int,
        blobs: it.Blobs,
    ) -> list[it.Entry]:
        entries = [it.Entry("r", key, blobs.store(it.dumps(v))) for key, v in records.items()]
        for key, value in context_writes.items():
            stored = None if value == ports.DELETE else blobs.store(it.dumps(value))
            entries.append(it.Entry("c", key, stored))
        if outbox:
            unique = list({m.id: m for m in reversed(outbox)}.values())[::-1]
            packed = it.pack_outbox(unique)
            entries.append(it.Entry("o", it.outbox_entry(version), blobs.store(packed)))
        return entries

    def _entry_update(
        self, run_id: str, entry: it.Entry, version: int, *, conditional: bool
    ) -> Item:
        """The ``Update`` that writes one journal entry as its item at ``version``."""
        sk = {"r": it.record_key, "c": it.context_key, "o": it.outbox_key}[entry.kind](entry.key)
        values: Item = {":v": _n(version)}
        sets = ["ver = :v"]
        removes: list[str] = []
        if entry.value is None:
            sets.append("del = :t")
            values[":t"] = {"BOOL": True}
            removes += ["d", "d_ref", "d_n"]
        elif isinstance(entry.value, it.Ref):
            sets += ["d_ref = :ref", "d_n = :n"]
            values |= {":ref": _s(entry.value.sha), ":n": _n(entry.value.chunks)}
            removes += ["d", "del"]
        else:
            sets.append("d = :d")
            values[":d"] = {"B": entry.value}
            removes += ["d_ref", "d_n", "del"]
        update: Item = {
            "TableName": self.context_table,
            "Key": {"runId": _s(run_id), "sk": _s(sk)},
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            "ExpressionAttributeValues": values,
        }
        if conditional:
            update["ConditionExpression"] = "attribute_not_exists(ver) OR ver < :v"
        return {"Update": update}

    def _status_update(
        self,
        run_id: str,
        *,
        expected_version: int,
        status: str,
        output: object,
        errors: Sequence[Mapping[str, object]],
        now: float,
        blobs: it.Blobs,
    ) -> tuple[Item | None, tuple[str, bytes, bytes, float] | None]:
        """The status item's update, unless this process wrote the same lately."""
        out, errs = it.dumps(output), it.dumps(list(errors))
        known = self._written.get(run_id)
        if (
            known is not None
            and known.version == expected_version
            and (known.status, known.output, known.errors) == (status, out, errs)
            and now - known.updated < UPDATED_GRANULARITY
        ):
            return None, (status, out, errs, known.updated)
        values: Item = {":s": _s(status), ":u": _n(now)}
        sets = ["#s = :s", "updated = :u"]
        removes: list[str] = []
        for name, data in (("output", out), ("errors", errs)):
            stored = blobs.store(data)
            if isinstance(stored, it.Ref):
                sets += [f"{name}_ref = :{name}r", f"{name}_n = :{name}n"]
                values |= {f":{name}r": _s(stored.sha), f":{name}n": _n(stored.chunks)}
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = {"B": stored}
                removes += [f"{name}_ref", f"{name}_n"]
        if status in it.TERMINAL:
            removes.append("active")
        else:
            sets.append("active = :s")
        update = {
            "TableName": self.status_table,
            "Key": {"runId": _s(run_id)},
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            "ExpressionAttributeNames": {"#s": "status", "#output": "output", "#errors": "errors"},
            "ExpressionAttributeValues": values,
        }
        return {"Update": update}, (status, out, errs, now)

    def _remember(
        self, run_id: str, version: int, written: tuple[str, bytes, bytes, float]
    ) -> None:
        status, output, errors, updated = written
        self._written[run_id] = _Written(version, status, output, errors, updated)
        self._written.move_to_end(run_id)
        while len(self._written) > 10_000:
            self._written.popitem(last=False)

    def _outcome_update(self, run_id: str, attempt: str, outcome: bytes, blobs: it.Blobs) -> Item:
        stored = blobs.store(outcome)
        sets, values = self._outcome_sets(stored)
        return {"Update": {
            "TableName": self.context_table,
            "Key": {"runId": _s(run_id), "sk": _s(it.attempt_key(attempt))},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": _NO_OUTCOME,
            "ExpressionAttributeValues": values,
        }}  # fmt: skip

    @staticmethod
    def _outcome_sets(stored: _Stored) -> tuple[list[str], Item]:
        if isinstance(stored, it.Ref):
            return ["outcome_ref = :r", "outcome_n = :n"], {
                ":r": _s(stored.sha),
                ":n": _n(stored.chunks),
            }
        return ["outcome = :o"], {":o": {"B": stored}}

    def _claim_put(self, run_id: str, attempt: str, owner: str, until: float) -> Item:
        item = {"runId": _s(run_id), "sk": _s(it.attempt_key(attempt)),
                "owner": _s(owner), "lease": _n(until)}  # fmt: skip
        return {"Put": {"TableName": self.context_table, "Item": item,
                        "ConditionExpression": "attribute_not_exists(sk)"}}  # fmt: skip

    def _delete(self, run_id: str, sk: str) -> Item:
        return {"Delete": {"TableName": self.context_table,
                           "Key": {"runId": _s(run_id), "sk": _s(sk)}}}  # fmt: skip

    @staticmethod
    def _journal_needed(fixed: Sequence[Item], parts: Sequence[Item]) -> bool:
        if len(fixed) + len(parts) > MAX_ITEMS:
            return True
        return sum(_request_size(p) for p in (*fixed, *parts)) > MAX_BYTES

    # ------------------------------------------------------------------ journal

    @staticmethod
    def _pending_attribute(version: int, nonce: str, entries: Sequence[it.Entry]) -> Item:
        return {"M": {"ver": _n(version), "nonce": _s(nonce), "n": _n(len(entries))}}

    @staticmethod
    def _pending_of(head: Mapping[str, Any]) -> _Pending | None:
        pending = head.get("pending", {}).get("M")
        if not pending:
            return None
        return _Pending(int(pending["ver"]["N"]), pending["nonce"]["S"], int(pending["n"]["N"]))

    async def _write_journal(
        self, run_id: str, version: int, nonce: str, entries: Sequence[it.Entry]
    ) -> None:
        prefix = it.journal_prefix(version, nonce)
        expires = int(time.time()) + 86_400 * 7
        items = [
            {"runId": _s(run_id), "sk": _s(f"{prefix}{i:06d}"), "d": {"B": payload},
             "expires_at": _n(expires)}
            for i, payload in enumerate(it.pack_journal(entries))
        ]  # fmt: skip
        await self._batch_write(self.context_table, [{"PutRequest": {"Item": i}} for i in items])

    async def _drop_journal(self, run_id: str, version: int, nonce: str) -> None:
        keys = await self._query(
            TableName=self.context_table, ConsistentRead=True, ProjectionExpression="runId, sk",
            KeyConditionExpression="runId = :r AND begins_with(sk, :j)",
            ExpressionAttributeValues={
                ":r": _s(run_id), ":j": _s(it.journal_prefix(version, nonce))
            },
        )  # fmt: skip
        await self._batch_write(self.context_table, [{"DeleteRequest": {"Key": k}} for k in keys])

    async def _roll_forward(self, run_id: str, pending: _Pending) -> None:
        """Apply a committed journal whose writer did not finish (it died or is slow)."""
        items = await self._query(
            TableName=self.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND begins_with(sk, :j)",
            ExpressionAttributeValues={
                ":r": _s(run_id), ":j": _s(it.journal_prefix(pending.version, pending.nonce))
            },
        )  # fmt: skip
        entries = it.unpack_journal(bytes(i["d"]["B"]) for i in items)
        await self._apply(run_id, pending, entries, ())

    async def _apply(
        self,
        run_id: str,
        pending: _Pending,
        entries: Sequence[it.Entry],
        claims: Sequence[tuple[str, str, float]],
    ) -> None:
        """Write a committed journal's entries as items, then clear ``pending``. Idempotent."""
        updates = [
            self._entry_update(run_id, e, pending.version, conditional=True) for e in entries
        ]
        now = time.time()
        claim_puts = [self._claim_put(run_id, a, owner, now + lease) for a, owner, lease in claims]
        limit = asyncio.Semaphore(_APPLY_CONCURRENCY)

        async def write(part: Item) -> None:
            async with limit:
                await self._single(part)

        await asyncio.gather(*(write(p) for p in (*updates, *claim_puts)))
        with contextlib.suppress(Refused):
            await self._aws.dynamodb(
                "update_item", TableName=self.context_table,
                Key={"runId": _s(run_id), "sk": _s(it.HEADER)},
                UpdateExpression="REMOVE pending",
                ConditionExpression="pending.nonce = :n",
                ExpressionAttributeValues={":n": _s(pending.nonce)},
            )  # fmt: skip
        self._spawn(self._drop_journal(run_id, pending.version, pending.nonce))

    async def _single(self, part: Item) -> None:
        """One transaction part as a plain conditional write; a refused condition is fine."""
        ((kind, request),) = part.items()
        operation = {"Update": "update_item", "Put": "put_item", "Delete": "delete_item"}[kind]
        with contextlib.suppress(Refused):
            await self._aws.dynamodb(operation, **request)

    # ------------------------------------------------------------------ outbox and attempts

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages from outboxes (one item per save). Idempotent.

        Items all of whose messages were sent are deleted (``BatchWriteItem``); items keeping
        others note the sent ones in their ``gone`` set (``UpdateItem``).

        Items this process knows (``_outbox.py``) cost no read and are deleted once; for ids it
        does not know, the run's outbox items are read first.
        """
        plans = {run_id: self._outbox.plan(run_id, ids) for run_id, ids in sent.items() if ids}
        unknown = [run_id for run_id, plan in plans.items() if plan.unknown]
        await asyncio.gather(*(self._learn_outbox(run_id) for run_id in unknown))
        for run_id in unknown:
            plans[run_id] = self._outbox.plan(run_id, sent[run_id])
            self._outbox.absent(run_id, plans[run_id].unknown)
        deletes = [
            {"DeleteRequest": {"Key": {"runId": _s(run_id), "sk": _s(it.outbox_key(key))}}}
            for run_id, plan in plans.items()
            for key in plan.deletes
        ]
        trims = [
            self._trim(run_id, key, ids)
            for run_id, plan in plans.items()
            for key, ids in plan.trims.items()
        ]
        await asyncio.gather(self._batch_write(self.context_table, deletes), *trims)
        for run_id, plan in plans.items():
            self._outbox.done(run_id, plan)

    async def _learn_outbox(self, run_id: str) -> None:
        """Read the run's outbox items (what holds which message) into the book."""
        items = await self._query(
            TableName=self.context_table, ConsistentRead=True,
            KeyConditionExpression="runId = :r AND begins_with(sk, :o)",
            ExpressionAttributeValues={":r": _s(run_id), ":o": _s(it.outbox_key(""))},
        )  # fmt: skip
        outbox: dict[str, tuple[_Stored, frozenset[str]]] = {}
        for item in items:
            value = it.stored_value(item, "d")
            if value is not None:
                outbox[item["sk"]["S"][2:]] = (value, _gone(item))
        refs = {(run_id, v) for v, _ in outbox.values() if isinstance(v, it.Ref)}
        self._outbox_of(run_id, outbox, await self._resolve(refs))

    async def _trim(self, run_id: str, key: str, ids: Sequence[str]) -> None:
        """Note sent messages of an outbox item that keeps others (gone if it is gone)."""
        with contextlib.suppress(Refused):
            await self._aws.dynamodb(
                "update_item", TableName=self.context_table,
                Key={"runId": _s(run_id), "sk": _s(it.outbox_key(key))},
                UpdateExpression="ADD gone :g", ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeValues={":g": {"SS": list(ids)}},
            )  # fmt: skip

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> ports.AttemptClaim:
        """Take the lease: a conditional update, with the other claims of this loop turn."""
        return await self._claims.submit(_Claim(run_id, attempt, owner, lease))

    async def _claim_many(self, claims: list[_Claim]) -> list[ports.AttemptClaim | BaseException]:
        """Claims in one ``TransactWriteItems``; refused ones alone, the others together again."""
        firsts = {(c.run_id, c.attempt): c for c in reversed(claims)}  # one write per item
        together = [c for c in claims if firsts[(c.run_id, c.attempt)] is c]
        if len(together) < 2:
            return await _each(self._claim_one, claims)
        now = time.time()
        try:
            await self._aws.dynamodb(
                "transact_write_items", ClientRequestToken=uuid.uuid4().hex,
                TransactItems=[
                    {"Update": self._claim_update(c, now) | _ALL_OLD} for c in together
                ],
            )  # fmt: skip
        except Refused as refused:
            reasons = list(refused.reasons)
            fine = [c for i, c in enumerate(together) if reasons[i : i + 1] == ["None"]]
            if len(fine) == len(together):
                fine = []  # no reason given: every claim alone
            current = {c: refused.current(i) for i, c in enumerate(together) if refused.failed(i)}
            answers: dict[_Claim, ports.AttemptClaim | BaseException] = {}
            for claim, item in current.items():
                if item is not None:
                    answers[claim] = await self._refused_claim(claim, dict(item))
            alone = [c for c in claims if c not in fine and c not in answers]
            answers |= zip(alone, await _each(self._claim_one, alone), strict=True)
            answers |= zip(fine, await self._claim_many(fine), strict=True)
            return [answers[c] for c in claims]
        claimed = {
            c: ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + c.lease)
            for c in together
        }
        return [claimed.get(c) or await self._claim_one(c) for c in claims]

    async def _refused_claim(self, claim: _Claim, item: Item) -> ports.AttemptClaim:
        """The answer to a claim refused by the attempt's current ``item``: DONE or BUSY."""
        outcome = await self._outcome_of(claim.run_id, item)
        if outcome is not None:
            self._stands(claim.run_id, claim.attempt, outcome)
            return ports.AttemptClaim(status=ports.ClaimStatus.DONE, outcome=outcome)
        return ports.AttemptClaim(status=ports.ClaimStatus.BUSY,
                                  lease_until=float(item["lease"]["N"]))  # fmt: skip

    def _claim_update(self, claim: _Claim, now: float) -> Item:
        """The conditional update that takes a claim's lease."""
        return {
            "TableName": self.context_table,
            "Key": {"runId": _s(claim.run_id), "sk": _s(it.attempt_key(claim.attempt))},
            "UpdateExpression": "SET #o = :o, lease = :l",
            "ConditionExpression": (
                "attribute_not_exists(outcome) AND attribute_not_exists(outcome_ref) AND "
                "(attribute_not_exists(lease) OR #o = :o OR lease <= :now)"
            ),
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {
                ":o": _s(claim.owner), ":l": _n(now + claim.lease), ":now": _n(now)
            },
        }  # fmt: skip

    async def _claim_one(self, claim: _Claim) -> ports.AttemptClaim:
        """Take the lease: one conditional ``UpdateItem`` (the current item if refused)."""
        run_id, attempt = claim.run_id, claim.attempt
        now = time.time()
        try:
            await self._aws.dynamodb(
                "update_item", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **self._claim_update(claim, now),
            )  # fmt: skip
        except Refused as refused:
            item = dict(refused.item) if refused.item else await self._attempt(run_id, attempt)
            if item is None:
                return await self._claim_one(claim)
            return await self._refused_claim(claim, item)
        return ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + claim.lease)

    async def _attempt(self, run_id: str, attempt: str) -> Item | None:
        got = await self._aws.dynamodb(
            "get_item", TableName=self.context_table, ConsistentRead=True,
            Key={"runId": _s(run_id), "sk": _s(it.attempt_key(attempt))},
        )  # fmt: skip
        item: Item | None = got.get("Item")
        return item

    async def _outcome_of(self, run_id: str, item: Mapping[str, Any]) -> bytes | None:
        stored = it.stored_value(item, "outcome")
        if stored is None or isinstance(stored, bytes):
            return stored
        return (await self._resolve({(run_id, stored)}))[(run_id, stored.sha)]

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease: one conditional ``UpdateItem``."""
        try:
            await self._aws.dynamodb(
                "update_item", TableName=self.context_table,
                Key={"runId": _s(run_id), "sk": _s(it.attempt_key(attempt))},
                UpdateExpression="SET lease = :l",
                ConditionExpression=f"#o = :o AND {_NO_OUTCOME}",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":o": _s(owner), ":l": _n(time.time() + lease)},
            )  # fmt: skip
        except Refused:
            return False
        return True

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer wins: one conditional ``UpdateItem``; the standing outcome back.

        An outcome this process knows to stand (it committed it, or read it) is answered
        without a call: outcomes never change once committed (e.g. the coordinator settling
        the outcomes of a refused save, which the save committed already).
        """
        known = self._outcomes.get((run_id, attempt))
        if known is not None:
            return known
        standing = await self._commit(run_id, attempt, outcome)
        self._stands(run_id, attempt, standing)
        return standing

    def _stands(self, run_id: str, attempt: str, outcome: bytes) -> None:
        """Note an outcome known to be the committed one (the last 10,000)."""
        self._outcomes[(run_id, attempt)] = outcome
        self._outcomes.move_to_end((run_id, attempt))
        while len(self._outcomes) > 10_000:
            self._outcomes.popitem(last=False)

    async def _commit(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        blobs = it.Blobs()
        update = self._outcome_update(run_id, attempt, outcome, blobs)["Update"]
        await self._write_blobs(run_id, blobs)
        for _ in range(_READ_RETRIES):
            try:
                await self._aws.dynamodb(
                    "update_item", ReturnValuesOnConditionCheckFailure="ALL_OLD", **update
                )
            except Refused as refused:
                item = dict(refused.item) if refused.item else await self._attempt(run_id, attempt)
                standing = await self._outcome_of(run_id, item) if item else None
                if standing is not None:
                    return standing
                continue
            except TransientBackendError:
                await asyncio.sleep(0.01)
                continue
            return outcome
        raise TransientBackendError(f"run {run_id}: could not commit attempt {attempt}")

    async def _commit_all(self, run_id: str, outcomes: Sequence[tuple[str, bytes]]) -> bool:
        """Commit each outcome on its own; True if every one of them is the one that stands."""
        standing = await asyncio.gather(*(self.commit_attempt(run_id, a, o) for a, o in outcomes))
        return all(s == o for s, (_, o) in zip(standing, outcomes, strict=True))

    # ------------------------------------------------------------------ I/O helpers

    async def _transact(self, items: Sequence[Item]) -> None:
        for part in items:
            request = next(iter(part.values()))
            if "ConditionExpression" in request and part.get("Put") is not None:
                request.setdefault("ReturnValuesOnConditionCheckFailure", "ALL_OLD")
        await self._aws.dynamodb(
            "transact_write_items", TransactItems=list(items), ClientRequestToken=uuid.uuid4().hex
        )

    async def _query(self, *, want: int | None = None, **params: Any) -> list[Item]:  # noqa: ANN401
        """Every item of a query (all pages), or the first ``want``."""
        found: list[Item] = []
        while True:
            if want is not None:
                params["Limit"] = want - len(found)
            page = await self._aws.dynamodb("query", **params)
            found += page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last or (want is not None and len(found) >= want):
                return found
            params["ExclusiveStartKey"] = last

    async def _batch_get(self, table: str, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """Items by key, consistent (100 keys per request, unprocessed keys retried)."""
        found: list[Item] = []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: Item = {table: {"ConsistentRead": True, "Keys": [
                {"runId": _s(r), "sk": _s(sk)} for r, sk in unique[start : start + 100]
            ]}}  # fmt: skip
            for attempt in range(12):
                answer = await self._aws.dynamodb("batch_get_item", RequestItems=request)
                found += answer.get("Responses", {}).get(table, [])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                await asyncio.sleep(min(1.0, 0.01 * 2**attempt))
            else:
                raise TransientBackendError(f"{table}: reads stayed unprocessed (throttled)")
        return found

    async def _batch_write(self, table: str, requests: Sequence[Item]) -> None:
        """Puts and deletes, 25 per request, in parallel, unprocessed ones retried."""

        async def one(batch: list[Item]) -> None:
            pending: Item = {table: batch}
            for attempt in range(12):
                answer = await self._aws.dynamodb("batch_write_item", RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    return
                await asyncio.sleep(min(1.0, 0.01 * 2**attempt))
            raise TransientBackendError(f"{table}: writes stayed unprocessed (throttled)")

        batches = [list(requests[i : i + 25]) for i in range(0, len(requests), 25)]
        await asyncio.gather(*(one(b) for b in batches))

    async def _write_blobs(self, run_id: str, blobs: it.Blobs) -> None:
        items = it.blob_items(run_id, blobs)
        await self._batch_write(self.context_table, [{"PutRequest": {"Item": i}} for i in items])

    async def _resolve(self, refs: Collection[tuple[str, it.Ref]]) -> dict[tuple[str, str], bytes]:
        """The values of large-value references ``(run id, ref)``."""
        if not refs:
            return {}
        keys = [(run_id, key) for run_id, ref in refs for key in it.chunk_keys(ref)]
        items = await self._batch_get(self.context_table, keys)
        chunks = {(i["runId"]["S"], i["sk"]["S"]): bytes(i["d"]["B"]) for i in items}
        resolved: dict[tuple[str, str], bytes] = {}
        for run_id, ref in refs:
            mine = {
                key: chunks[(run_id, key)] for key in it.chunk_keys(ref) if (run_id, key) in chunks
            }
            resolved[(run_id, ref.sha)] = it.assemble(ref, mine)
        return resolved


def _request_size(part: Mapping[str, Any]) -> int:
    request = next(iter(part.values()))
    size = 0
    for name in ("Item", "Key", "ExpressionAttributeValues"):
        if name in request:
            size += it.item_size(request[name])
    return size + 200


def _overlay(
    entries: Iterable[it.Entry],
    records: dict[str, _Stored],
    context: dict[str, _Stored],
    outbox: dict[str, tuple[_Stored, frozenset[str]]] | None,
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


async def _each(
    claim: Callable[[_Claim], Awaitable[ports.AttemptClaim]], claims: Sequence[_Claim]
) -> list[ports.AttemptClaim | BaseException]:
    """Each claim on its own, concurrently; its answer or its error."""
    return await asyncio.gather(*(claim(c) for c in claims), return_exceptions=True)


def _gone(item: Mapping[str, Any]) -> frozenset[str]:
    """Ids of an outbox item's messages removed since it was written."""
    return frozenset(item.get("gone", {}).get("SS", ()))


def _without_failed_claims(refused: Refused, transaction: list[Item]) -> list[Item] | None:
    """The transaction without its claims, if failed claims are all that refused it."""
    failed = {
        index
        for index, part in enumerate(transaction)
        if refused.failed(index) and "Put" in part and _sort_key(part).startswith("t#")
    }
    others = {i for i, r in enumerate(refused.reasons) if r not in ("None", "")}
    if failed and others == failed:
        return [p for i, p in enumerate(transaction) if i not in failed]
    return None


def _sort_key(part: Mapping[str, Any]) -> str:
    """The sort key a transaction part writes ("" for parts of the statuses table)."""
    request = next(iter(part.values()))
    key = request.get("Item") or request.get("Key") or {}
    return str(key.get("sk", {}).get("S", ""))
