"""The run store on Apache Cassandra (``ports.RunStore``): one partition per run.

**Layout** (:mod:`flowcraft.kafka._tables`): a run is one partition of the contexts table,
``(namespace, run_id)``. Its static columns are the header, the version, the record's fields and
a pending-journal pointer; its rows are the records (``r``), context keys (``c``), outbox
messages (``o``), committed outcomes (``d``), journal chunks (``j``) and one anchor row (``h``,
written with the run, never removed), each record and context row stamped with the version
that wrote it. Attempt leases live in a table of their
own, one partition per attempt.

**Saves.** ``save_state`` is one conditional batch in the run's partition: a lightweight
transaction on the static version (``IF version = ? AND journal = null``) carrying only what
changed: the records and context keys written (a deleted key stays as a row without value, so
a reader can tell it is newer than its snapshot), outbox messages added and removed, and each
carried outcome as ``INSERT ... IF NOT EXISTS`` (the batch applies only if
every condition holds; refused, the outcomes are committed one by one afterwards, so they
stand). A save larger than the batch budget (Cassandra refuses batches over 50 KiB by default)
writes its operations first as journal chunks no reader takes into account, then commits the
version and a pointer to them in the conditional batch, then applies them with ``USING
TIMESTAMP`` of that commit (a later save always writes over them, whoever applies late) and
clears the pointer with a conditional update. Readers overlay a pending journal; a writer
that finds one rolls it forward before its own compare-and-set.

**Creating.** ``create_run`` takes the idempotency key first (``INSERT ... IF NOT EXISTS`` in
the key's partition: the key and the run cannot share one conditional batch), then lists the
run (one unlogged batch over the listing partitions), then writes it in one conditional batch
in its partition (``INSERT ... IF NOT EXISTS`` of the static row, the anchor and the records).
``create_started_run`` (``ports.RunStarter``) is the same steps, its batch carrying version 2:
the header, records, context and outbox of the start's decision, and the record's status:
``create_run`` and the first ``save_state`` in one LWT instead of two. A key already held by
another run writes nothing more and answers with that run; one held by this very run id (an
earlier try that died before its batch, or a lost answer) goes on: the run's own conditional
batch decides. A crash after the key leaves a key naming a run that does not exist: a retry
with the same run id creates it; one with a new run id waits 10 s for that run, then raises
``TransientBackendError`` (as ``create_run`` always has).

**Reads.** ``load_state`` reads the static row, then the run's rows (paged to the end); every row
carries the static version of its page, so a save that landed in between is seen and the read
is repeated: each load is a snapshot of one version. ``since`` loads filter the rows by the
version stamp (a catch-up reads the partition, as a full load does). ``read_result``
(``ports.ResultReader``) sends two statements at once: the anchor and context rows (``kind IN``),
and the anchor and the named records (``(kind, key) IN``); each row carries the static version
and journal pointer of its read, so equal ones on every row (the anchors make both reads
return one) are one snapshot, read in one round trip. A run created before anchors existed is
read after its static row, as ``load_state`` reads.

**Attempts.** A lease is one partition of the attempts table, ``(namespace, run_id, attempt)``,
so the claims of a fan-out's nodes are lightweight transactions on as many partitions, not a
queue on the run's (Paxos orders the LWTs of one partition: with Paxos v1, eight at once on
one partition took ~100 ms where one takes ~1 ms). ``claim_attempt``: the outcome row is read
(DONE) at the same time as ``INSERT ... IF NOT EXISTS`` on the lease is sent (one round trip,
not two: an outcome found wins, and a lease the insert took on a done attempt only waits for
its TTL; an outcome committed after the read is the race a read-then-insert has too), then, if
the lease is someone else's and expired, a conditional update takes it over (``IF owner = ?
AND lease_until = ?`` of the lease it saw).
``extend_attempt``: ``IF owner = ?``. Every lease write has a TTL of the lease plus a day
(:data:`LEASE_KEPT`): an expired lease is as good as none, so nothing is lost when it goes.
``commit_attempt``: ``INSERT ... IF NOT EXISTS`` on the outcome row in the run's partition,
first writer wins (it must stay there: a save commits the outcomes it carries in its
conditional batch, which Cassandra keeps to one partition).

**Listing.** ``list_runs`` pages through the runs-by-day table (newest day first, then
``created_at`` and run id descending) and reads each listed run's record (status filter
applied to the record); ``stalled_runs`` reads the sharded table of unfinished runs and each
one's record. No query uses ``ALLOW FILTERING``; every statement is prepared.

**Guarantees and limits.** Atomic saves of any size; linearizable compare-and-set (Paxos, at
``serial_consistency``). Leases a save carries (``claims``) are written with it as plain
upserts once the conditional batch applied, before ``save_state`` returns (so before the
runtime sends their jobs): the attempts a decision starts are new, so there is no earlier lease
to keep, and a refused save writes none. A crash between the batch and the leases leaves
running attempts without a lease, which anyone may claim, as after any crash. Each save is one
LWT round trip (Paxos v2: two round trips; v1: four); a large one adds its chunk writes, the
apply and one more LWT. The listing and
active-runs tables are written beside the run (not in its batch): a crash between them leaves a
listed run without a record, which the readers skip. ``stalled_runs`` reads every unfinished
run's record (as many reads as runs in flight).
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cassandra import ConsistencyLevel
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import (
    AttemptClaim,
    ClaimStatus,
    Message,
    RunPage,
    RunRecord,
    StoredResult,
    StoredState,
)
from flowcraft.kafka._codec import (
    decode_cursor,
    dumps,
    encode_cursor,
    loads,
    record_of,
    record_static,
)
from flowcraft.kafka._cql import Cql
from flowcraft.kafka._statements import Queries
from flowcraft.kafka._tables import ACTIVE_SHARDS, Tables
from flowcraft.kafka._writes import BATCH_BUDGET, Op, chunks, ops_from_chunk, ops_of, size

__all__ = ["CassandraContext"]

_TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: Seconds a lease row outlives its lease (its TTL is the lease plus this).
LEASE_KEPT = 86_400
_MAX_TTL = 630_720_000  # Cassandra's limit: 20 years
_DAY = 86_400.0
#: Record keys per statement of ``read_result`` (``(kind, key) IN``).
_KEYS_PER_READ = 100
_SIMPLE = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


class CassandraContext:
    """Run state of one namespace in Cassandra (see the module for the design).

    Args:
        session: A connected cassandra-driver ``Session`` (its cluster is the caller's).
        keyspace: The keyspace of the tables (created by ``ensure_schema`` if missing).
        namespace: The namespace whose runs this store holds (part of every partition key).
        context_table_name: The run-partition table.
        status_table_name: The runs-by-day table (and the prefix of the days/active tables).
        replication: The keyspace's replication map, used only if ``ensure_schema`` creates it.
        consistency / serial_consistency: For reads and writes / for lightweight transactions.
    """

    def __init__(
        self, *, session: Any, keyspace: str = "flowcraft", namespace: str = "flowcraft",  # noqa: ANN401
        context_table_name: str = "flowcraft_contexts",
        status_table_name: str = "flowcraft_statuses", replication: str = _SIMPLE,
        consistency: int = ConsistencyLevel.LOCAL_QUORUM,
        serial_consistency: int = ConsistencyLevel.LOCAL_SERIAL,
    ) -> None:  # fmt: skip
        self.tables = Tables(keyspace, context_table_name, status_table_name)
        self.namespace = namespace
        self._replication = replication
        self.cql = Cql(session, consistency=consistency, serial_consistency=serial_consistency)
        self._q = Queries(self.tables)

    # ------------------------------------------------------------------ schema

    async def ensure_schema(self) -> None:
        """Create the keyspace and tables unless they exist (idempotent)."""
        for ddl in [self.tables.keyspace_ddl(self._replication), *self.tables.ddl()]:
            await self.cql.execute(_simple(ddl))

    async def drop_namespace(self) -> None:
        """Delete every run of the namespace (tests); the tables stay.

        The runs' lease rows (one partition per attempt, not listed anywhere) are left to
        their TTL.
        """
        ns = self.namespace
        for day_row in await self.cql.rows(self._q.days, ns):
            for row in await self.cql.rows(self._q.listing_all, ns, day_row.day):
                await self.cql.run(self._q.drop_run, ns, row.run_id)
            await self.cql.run(self._q.drop_listing, ns, day_row.day)
        await self.cql.run(self._q.drop_days, ns)
        for shard in range(ACTIVE_SHARDS):
            await self.cql.run(self._q.drop_active, ns, shard)

    async def close(self) -> None:
        """Nothing of its own to release (the session belongs to the caller)."""

    # ------------------------------------------------------------------ runs

    async def create_run(
        self, record: RunRecord, header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> RunRecord:  # fmt: skip
        """Create the run unless its id, or its idempotency key, exists (atomic, idempotent)."""
        holder = await self._take_key(record)
        if holder is not None:
            return await self._existing(holder)
        now = time.time()
        stamped = replace(record, created_at=record.created_at or now, updated_at=now)
        ops: list[Op] = [("r", key, dumps(value)) for key, value in (records or {}).items()]
        if not await self._create(stamped, 1, header, ops):
            return await self._existing(record.run_id)
        return stamped

    async def create_started_run(
        self, record: RunRecord, *, header: Mapping[str, object],
        records: Mapping[str, object], context: Mapping[str, object], outbox: Sequence[Message],
        status: str, output: object = None, errors: Sequence[Mapping[str, object]] = (),
    ) -> tuple[RunRecord, bool]:  # fmt: skip
        """Create the run at version 2 with its first decision (``ports.RunStarter``).

        The same steps as ``create_run`` (the idempotency key's LWT, the listing, one
        conditional batch in the run's partition), the batch carrying the started state: as
        ``create_run`` and a ``save_state(expected_version=1)`` in one LWT instead of two.
        """
        holder = await self._take_key(record)
        if holder is not None:
            return await self._existing(holder), False
        now = time.time()
        stamped = replace(record, status=status, output=output, errors=tuple(errors),
                          created_at=record.created_at or now, updated_at=now)  # fmt: skip
        ops = ops_of(version=2, records=records, context_writes=context, outbox=outbox, sent=())
        if not await self._create(stamped, 2, header, ops, active=status not in _TERMINAL):
            return await self._existing(record.run_id), False
        return stamped, True

    async def _take_key(self, record: RunRecord) -> str | None:
        """Take the run's idempotency key (an LWT in the key's partition).

        The id of another run that holds the key, or None: no key, taken now, or taken by an
        earlier try of this same run (whose run may not exist: it died before its batch; the
        batch that follows decides, by the run id, as for a start without a key).
        """
        if record.idempotency_key is None:
            return None
        taken = await self.cql.run(self._q.take_key, self.namespace, record.idempotency_key,
                                   record.run_id)  # fmt: skip
        if taken.was_applied:
            return None
        holder = str(taken.one().run_id)
        return None if holder == record.run_id else holder

    async def _create(
        self, stamped: RunRecord, version: int, header: Mapping[str, object],
        ops: Sequence[Op], *, active: bool = True,
    ) -> bool:  # fmt: skip
        """List the run, then write it at ``version`` in one conditional batch (False: exists).

        The batch is ``INSERT ... IF NOT EXISTS`` of the static row, the anchor row and
        ``ops`` (or, for a large start, the pointer to their journal, rolled forward after).
        """
        run_id = stamped.run_id
        await self._list(stamped, active=active)
        journal = await self._journal(run_id, version, ops)
        create = await self.cql.bound(self._q.create, [
            self.namespace, run_id, version, dumps(header), journal, record_static(stamped),
            stamped.status, dumps(stamped.output), dumps(list(stamped.errors)),
            stamped.updated_at,
        ])  # fmt: skip
        anchor = await self.cql.bound(self._q.anchor, [self.namespace, run_id])
        writes = [] if journal else await self._statements(run_id, version, ops, None)
        result = await self.cql.batch([create, anchor, *writes], conditional=True)
        if not result.was_applied:
            return False
        if journal:
            await self._roll_forward(run_id, journal)
        return True

    async def _list(self, record: RunRecord, *, active: bool = True) -> None:
        """List the run by day, and unless it starts terminal as active: one unlogged batch.

        The batch spans those tables' partitions: each write applies on its own.
        """
        ns, day = self.namespace, int(record.created_at // _DAY)
        writes = [
            await self.cql.bound(self._q.list_run, [ns, day, record.created_at, record.run_id]),
            await self.cql.bound(self._q.list_day, [ns, day]),
        ]
        if active:
            shard = _shard(record.run_id)
            writes.append(await self.cql.bound(self._q.activate, [ns, shard, record.run_id]))
        await self.cql.batch(writes)

    async def _existing(self, run_id: str) -> RunRecord:
        """The record of a run another creator made (it may still be on its way)."""
        deadline = time.monotonic() + 10.0
        while (found := await self.get_run(run_id)) is None:
            if time.monotonic() > deadline:
                raise TransientBackendError(f"run {run_id!r}: its creation never completed")
            await asyncio.sleep(0.02)
        return found

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""
        return record_of(run_id, (await self.cql.run(self._q.head, self.namespace, run_id)).one())

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """One version's state: header, records (all or since), context, outbox, record."""
        for _ in range(20):
            head = (await self.cql.run(self._q.head, self.namespace, run_id)).one()
            if head is None or head.version is None:
                return None
            rows = await self.cql.rows(self._q.body, self.namespace, run_id)
            if all(row.version == head.version for row in rows):
                return _state(run_id, head, rows, since, set(keys))
        raise TransientBackendError(f"run {run_id!r} kept changing while it was read")

    async def read_result(self, run_id: str, keys: Collection[str]) -> StoredResult | None:
        """Version, header, context and the records among ``keys`` (``ports.ResultReader``).

        Two statements at once: the run's anchor and context rows (and a pending journal's
        chunks), and its anchor and the named records (``(kind, key) IN``, 100 keys a
        statement); every row carries the static version and journal pointer of its read, so
        equal ones are one snapshot (otherwise the read is repeated). A run written before
        anchors existed is read after its static row instead, as ``load_state`` reads.
        """
        wanted = list(dict.fromkeys(keys))
        for _ in range(20):
            parts = await self._result_parts(run_id, wanted)
            anchors = [next((row for row in rows if row.kind == "h"), None) for rows in parts]
            if all(anchor is not None for anchor in anchors):
                head = anchors[1]  # the first records read's anchor: it has the header
            else:
                head = (await self.cql.run(self._q.head, self.namespace, run_id)).one()
                if head is None or head.version is None:
                    return None
                parts = await self._result_parts(run_id, wanted)
            rows = [row for part in parts for row in part]
            if _one_snapshot(head, rows):
                return _result(head, rows, set(wanted))
        raise TransientBackendError(f"run {run_id!r} kept changing while it was read")

    async def _result_parts(self, run_id: str, wanted: Sequence[str]) -> list[list[Any]]:
        """The anchor and context rows, then the anchor and the named records (all at once)."""
        groups = [wanted[i : i + _KEYS_PER_READ] for i in range(0, len(wanted), _KEYS_PER_READ)]
        ns = self.namespace
        return list(await asyncio.gather(
            self.cql.rows(self._q.result_context, ns, run_id),
            *(self.cql.rows(self._q.result_records, ns, run_id,
                            [("h", ""), *(("r", key) for key in group)])
              for group in groups or [[]]),
        ))  # fmt: skip

    async def save_state(
        self, run_id: str, *, expected_version: int, header: Mapping[str, object],
        records: Mapping[str, object], context_writes: Mapping[str, object],
        outbox: Sequence[Message], status: str, output: object = None,
        errors: Sequence[Mapping[str, object]] = (), outcomes: Sequence[tuple[str, bytes]] = (),
        claims: Sequence[tuple[str, str, float]] = (), sent: Sequence[str] = (),
    ) -> bool:  # fmt: skip
        """Compare-and-set of the version, with everything else, in one conditional batch."""
        version, now = expected_version + 1, time.time()
        ops = ops_of(version=version, records=records, context_writes=context_writes,
                     outbox=outbox, sent=sent)  # fmt: skip
        journal = await self._journal(run_id, version, ops)
        cas = await self.cql.bound(self._q.cas, [
            version, dumps(header), journal, status, dumps(output), dumps(list(errors)), now,
            self.namespace, run_id, expected_version,
        ])  # fmt: skip
        commits = [await self.cql.bound(self._q.commit, [self.namespace, run_id, a, o])
                   for a, o in outcomes]  # fmt: skip
        writes = [] if journal else await self._statements(run_id, version, ops, None)
        for _ in range(5):
            result = await self.cql.batch([cas, *commits, *writes], conditional=True)
            if result.was_applied:
                break
            pending = _pending_journal(result, expected_version)
            if pending is None:
                await self._commit_all(run_id, outcomes)
                return False
            await self._roll_forward(run_id, pending)
        else:
            raise TransientBackendError(f"run {run_id!r}: a pending journal never cleared")
        await self._lease_all(run_id, claims, now)
        if journal:
            await self._roll_forward(run_id, journal)
        if status in _TERMINAL:
            await self.cql.run(self._q.deactivate, self.namespace, _shard(run_id), run_id)
        return True

    async def _lease_all(
        self, run_id: str, claims: Sequence[tuple[str, str, float]], now: float
    ) -> None:
        """The leases a save carries (plain upserts, each in its attempt's partition)."""
        await asyncio.gather(*(
            self.cql.run(self._q.lease, self.namespace, run_id, attempt, owner, now + lease,
                         _ttl(lease))
            for attempt, owner, lease in claims
        ))  # fmt: skip

    async def _commit_all(self, run_id: str, outcomes: Sequence[tuple[str, bytes]]) -> None:
        for attempt, outcome in outcomes:
            await self.commit_attempt(run_id, attempt, outcome)

    async def _journal(self, run_id: str, version: int, ops: Sequence[Op]) -> str | None:
        """Write a large save's chunks; the journal's name (None: small, batch it)."""
        if sum(size(op) for op in ops) <= BATCH_BUDGET:
            return None
        journal = f"{version:012d}:{uuid.uuid4().hex[:12]}"
        await asyncio.gather(*(
            self.cql.run(self._q.chunk, self.namespace, run_id, f"{journal}:{i:06d}", text)
            for i, text in enumerate(chunks(ops))
        ))  # fmt: skip
        return journal

    async def _roll_forward(self, run_id: str, journal: str) -> None:
        """Apply a committed journal at its commit's timestamp, then clear the pointer."""
        ns = self.namespace
        head = (await self.cql.run(self._q.journal_head, ns, run_id)).one()
        if head is None or head.journal != journal:
            return  # applied and cleared by someone else
        version = int(journal.split(":", maxsplit=1)[0])
        found = await self.cql.rows(self._q.chunks, ns, run_id)
        mine = sorted((r for r in found if r.key.startswith(journal + ":")), key=lambda r: r.key)
        ops = [op for row in mine for op in ops_from_chunk(row.value)]
        statements = await self._statements(run_id, version, ops, head.stamp)
        await asyncio.gather(*(self.cql.batch(group) for group in _groups(statements, ops)))
        await self.cql.run(self._q.clear, ns, run_id, journal)
        done = [r.key for r in found if int(r.key.split(":")[0]) <= version]
        for group in (done[i : i + 200] for i in range(0, len(done), 200)):
            await self.cql.run(self._q.drop_chunks, ns, run_id, group)

    async def _statements(
        self, run_id: str, version: int, ops: Sequence[Op], stamp: int | None
    ) -> list[Any]:
        """Bound statements for ``ops`` (with ``USING TIMESTAMP stamp`` when given)."""
        q, ns, out = self._q, self.namespace, []
        stamped = stamp is not None
        for op in ops:
            kind = op[0]
            if kind in ("r", "c"):
                query, params = q.put(stamped), [ns, run_id, kind, op[1], op[2], version]
            elif kind == "o":
                query, params = q.add(stamped), [op[2], {op[3]}, version, ns, run_id, op[1]]
            else:
                query, params = q.sent(stamped), [ns, run_id, op[1]]
            if stamped:
                params = _with_stamp(query, params, stamp)
            out.append(await self.cql.bound(query, params))
        return out

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages from many runs' outboxes (one batch per run, concurrently)."""
        await asyncio.gather(*(
            self.cql.run(self._q.drop_outbox, self.namespace, run_id, list(ids))
            for run_id, ids in sent.items() if ids
        ))  # fmt: skip

    # ------------------------------------------------------------------ attempts

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        """Take the attempt's lease: DONE, BUSY or CLAIMED (see the port)."""
        ns = self.namespace
        for _ in range(10):
            now = time.time()
            until = now + lease
            outcome, taken = await asyncio.gather(
                self._outcome(run_id, attempt),
                self.cql.run(self._q.claim, ns, run_id, attempt, owner, until, _ttl(lease)),
            )  # fmt: skip
            if outcome is not None:  # a lease taken meanwhile guards nothing: it expires
                return AttemptClaim(status=ClaimStatus.DONE, outcome=outcome)
            if taken.was_applied:
                return AttemptClaim(status=ClaimStatus.CLAIMED, lease_until=until)
            current = taken.one()
            if current.owner != owner and (current.lease_until or 0.0) > now:
                return AttemptClaim(status=ClaimStatus.BUSY, lease_until=current.lease_until)
            over = await self.cql.run(self._q.take_over, _ttl(lease), owner, until, ns, run_id,
                                      attempt, current.owner, current.lease_until)  # fmt: skip
            if over.was_applied:
                return AttemptClaim(status=ClaimStatus.CLAIMED, lease_until=until)
        raise TransientBackendError(f"run {run_id!r}: attempt {attempt!r} is contended")

    async def _outcome(self, run_id: str, attempt: str) -> bytes | None:
        row = (await self.cql.run(self._q.outcome, self.namespace, run_id, attempt)).one()
        return None if row is None else bytes(row.outcome)

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease (False: lost, or the attempt is done)."""
        if await self._outcome(run_id, attempt) is not None:
            return False
        result = await self.cql.run(self._q.extend, _ttl(lease), owner, time.time() + lease,
                                    self.namespace, run_id, attempt, owner)  # fmt: skip
        return bool(result.was_applied)

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """``INSERT ... IF NOT EXISTS`` of the outcome: the first writer's stands."""
        result = await self.cql.run(self._q.commit, self.namespace, run_id, attempt, outcome)
        return outcome if result.was_applied else bytes(result.one().outcome)

    # ------------------------------------------------------------------ listing

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs newest first (by creation day, then time and id), ``status`` filtered."""
        after = decode_cursor(cursor) if cursor is not None else None
        found: list[tuple[int, RunRecord]] = []
        for day_row in await self.cql.rows(self._q.days, self.namespace):
            day = day_row.day
            if after is not None and day > after[0]:
                continue
            found += await self._day(day, after if after and after[0] == day else None, status,
                                     limit + 1 - len(found))  # fmt: skip
            if len(found) > limit:
                break
        page = found[:limit]
        more = len(found) > limit and page
        last = page[-1] if more else None
        next_cursor = encode_cursor(last[0], last[1].created_at, last[1].run_id) if last else None
        return RunPage(runs=tuple(r for _, r in page), cursor=next_cursor)

    async def _day(
        self, day: int, after: tuple[int, float, str] | None, status: str | None, wanted: int
    ) -> list[tuple[int, RunRecord]]:
        found: list[tuple[int, RunRecord]] = []
        position = (after[1], after[2]) if after else None
        while len(found) < wanted:
            if position is None:
                rows = await self.cql.rows(self._q.listing_first, self.namespace, day, 200)
            else:
                rows = await self.cql.rows(self._q.listing_after, self.namespace, day,
                                           position[0], position[1], 200)  # fmt: skip
            if not rows:
                break
            records = await asyncio.gather(*(self.get_run(r.run_id) for r in rows))
            for row, record in zip(rows, records, strict=True):
                if (
                    record is not None
                    and record.created_at == row.created_at
                    and (status is None or record.status == status)
                ):
                    found.append((day, record))
            position = (rows[-1].created_at, rows[-1].run_id)
        return found[:wanted]

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Unfinished runs not saved since ``updated_before``, longest idle first."""
        shards = await asyncio.gather(*(
            self.cql.rows(self._q.active, self.namespace, shard) for shard in range(ACTIVE_SHARDS)
        ))  # fmt: skip
        ids = [row.run_id for rows in shards for row in rows]
        records = await asyncio.gather(*(self.get_run(run_id) for run_id in ids))
        stale = [r for r in records if r is not None and r.status not in _TERMINAL
                 and r.updated_at < updated_before]  # fmt: skip
        stale.sort(key=lambda r: r.updated_at)
        return [r.run_id for r in stale[:limit]]


def _ttl(lease: float) -> int:
    """The TTL of a lease row: the lease, rounded up, plus :data:`LEASE_KEPT`."""
    return min(_MAX_TTL, int(lease) + 1 + LEASE_KEPT)


def _shard(run_id: str) -> int:
    return zlib.crc32(run_id.encode()) % ACTIVE_SHARDS


def _simple(query: str) -> Any:  # noqa: ANN401
    from cassandra.query import SimpleStatement  # noqa: PLC0415

    return SimpleStatement(query)


def _with_stamp(query: str, params: list[Any], stamp: int | None) -> list[Any]:
    """``USING TIMESTAMP ?`` comes first among an UPDATE's/DELETE's markers, last in an INSERT's."""
    return [*params, stamp] if query.startswith("INSERT") else [stamp, *params]


def _groups(statements: Sequence[Any], ops: Sequence[Op]) -> list[list[Any]]:
    """Statements in batches of about the batch budget."""
    groups: list[list[Any]] = [[]]
    used = 0
    for statement, op in zip(statements, ops, strict=True):
        if groups[-1] and used + size(op) > BATCH_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append(statement)
        used += size(op)
    return [g for g in groups if g]


def _pending_journal(result: Any, expected: int) -> str | None:  # noqa: ANN401
    """The journal to roll forward when a refused save found one at its version.

    A refused conditional batch returns the partition's current static values on its rows
    (whichever clustering row they come with).
    """
    for row in result:
        if getattr(row, "version", None) == expected and getattr(row, "journal", None):
            return str(row.journal)
    return None


def _state(
    run_id: str,
    head: Any,  # noqa: ANN401 - a driver row
    rows: Sequence[Any],
    since: int | None,
    keys: set[str],
) -> StoredState:
    records: dict[str, tuple[int, object]] = {}
    context: dict[str, object] = {}
    outbox: dict[str, tuple[int, Message]] = {}
    for row in rows:
        if row.kind == "r":
            records[row.key] = (row.written, loads(row.value))
        elif row.kind == "c" and row.value is not None:
            context[row.key] = loads(row.value)
        elif row.kind == "o" and row.body is not None:
            outbox[row.key] = (min(row.orders or (0,)), Message(id=row.key, body=bytes(row.body)))
    if head.journal is not None:
        _overlay(head.journal, rows, records, context, outbox)
    if since is not None:
        chosen = {k: v for k, (at, v) in records.items() if at > since or k in keys}
    else:
        chosen = {k: v for k, (_, v) in records.items()}
    ordered = tuple(m for _, m in sorted(outbox.values(), key=lambda e: e[0]))
    return StoredState(
        version=head.version, header=loads(head.header), records=chosen, context=context,
        outbox=ordered if since is None else (), record=record_of(run_id, head), since=since,
    )  # fmt: skip


def _overlay(
    journal: str, rows: Sequence[Any], records: dict[str, tuple[int, object]],
    context: dict[str, object], outbox: dict[str, tuple[int, Message]],
) -> None:  # fmt: skip
    """Apply a pending journal's operations to what the rows say (it is the newest version)."""
    version = int(journal.split(":", maxsplit=1)[0])
    mine = sorted((r for r in rows if r.kind == "j" and r.key.startswith(journal + ":")),
                  key=lambda r: r.key)  # fmt: skip
    for row in mine:
        for op in ops_from_chunk(row.value):
            if op[0] == "r":
                records[op[1]] = (version, loads(op[2]))
            elif op[0] == "c":
                if op[2] is None:
                    context.pop(op[1], None)
                else:
                    context[op[1]] = loads(op[2])
            elif op[0] == "o":
                before = outbox.get(op[1])
                outbox[op[1]] = (before[0] if before else op[3], Message(id=op[1], body=op[2]))
            elif op[0] == "s":
                outbox.pop(op[1], None)


def _one_snapshot(head: Any, rows: Sequence[Any]) -> bool:  # noqa: ANN401 - a driver row
    """Every row read at ``head``'s version and journal, and that journal's chunks among them."""
    if any((row.version, row.journal) != (head.version, head.journal) for row in rows):
        return False
    journal = head.journal
    return journal is None or any(
        row.kind == "j" and row.key.startswith(journal + ":") for row in rows
    )


def _result(head: Any, rows: Sequence[Any], wanted: set[str]) -> StoredResult:  # noqa: ANN401
    records: dict[str, tuple[int, object]] = {}
    context: dict[str, object] = {}
    for row in rows:
        if row.kind == "r":
            records[row.key] = (head.version, loads(row.value))
        elif row.kind == "c" and row.value is not None:
            context[row.key] = loads(row.value)
    if head.journal is not None:
        _overlay(head.journal, rows, records, context, {})
    return StoredResult(
        version=head.version, header=loads(head.header), context=context,
        records={key: value for key, (_, value) in records.items() if key in wanted},
    )  # fmt: skip
