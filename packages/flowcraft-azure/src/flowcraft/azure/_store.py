"""``CosmosDbContext``: the run store (``flowcraft.core.ports.RunStore``) on Cosmos DB.

Spec sheet
----------
* Containers: ``context_container_name`` (partition key ``/runId``: one logical partition per
  run; layout in ``_items``) and ``status_container_name`` (partition key ``/key``: one item
  per idempotency key). Definitions in ``_schema``.
* ``save_state`` is ONE single-item write, atomic on real Cosmos DB and on the emulator alike:
  a ``patch_item`` of the run item with the filter predicate ``c.ver = <expected>`` (the
  compare-and-set; 412 when the version moved on) and 10 operations (Cosmos DB's maximum):
  the new ``ver``, header, the save's log entry (its records, context writes and deletions,
  outbox messages and sent ids), status, ``active``, ``updated``, output, errors, the
  writer's nonce and ``incr lsz``. No transactional batch: the local Cosmos server does not
  make batches atomic (and takes only creates in them), and one item needs none. A save too
  big for the run item (over :data:`INLINE_BYTES`, e.g. a 10,000-wide fan-out's 20,000
  records) writes its rows first as journal parts (``j:`` items, 800 kB each, immutable) and
  the patch adds a log entry that points at them: the patch is still the commit; a refused
  save's parts are deleted in the background.
* Values over ``_items.VALUE_BYTES`` (records, context values, outbox bodies, outcomes, the
  run's input, output, errors and header) are written first as content-addressed chunk items
  (``z:``); the write names them by a reference. Reads fetch the chunks of the values they
  return (one ``ARRAY_CONTAINS`` query on ids per 100 chunks).
* The 2 MB item limit: the run item counts its log's bytes and sent markers in ``lsz`` (each
  save's patch and each sent-marker patch increments it) and each save's filter predicate also
  demands ``c.lsz <= LOG_LIMIT - <entry size>``. A refusal with the version unchanged means
  "full": the saver compacts, then patches again. Nothing relies on a process's memory.
* The log is folded into a **snapshot** (``s:`` parts) when it passes :data:`COMPACT_BYTES`:
  in the background after the save that crossed it (or before a save the log has no room
  for, see above), by a ``replace_item`` with the etag it read (412: read and fold again;
  ``lsz`` back to 0). Parts of snapshots two generations old and folded journals are
  deleted then.
* Outcomes a save carries are committed first, each as ``commit_attempt`` does (the port allows
  it: they stand whether or not the save does); if one of them is not the standing outcome the
  save writes nothing and returns False. Claims are written after the save, by creates in
  one transactional batch (never over an existing attempt; ``_claims``).
* Attempts (``t:`` items): ``claim_attempt`` is a create (409: a patch whose filter
  predicate admits only no outcome and the same owner or an expired lease; owners are
  compared as SHA-256 hex, never as raw strings in a predicate); the claims of one event-loop
  turn (a fan-out's jobs received together) go out as ONE transactional batch of creates per
  run, refusals answered claim by claim (``_claims``: right whether the batch is atomic, as
  on Cosmos DB, or not, as on the local server). ``extend_attempt`` is a patch with the same
  kind of predicate, ``commit_attempt`` a patch admitted only while ``outcome`` is null
  (first writer wins).
* Reads go through single-partition queries, never ``read_item`` (the local Cosmos server
  answers 500 instead of 404 for a missing id). A load reads the run item and its parts in one
  query; a part it does not find (written after the query passed it) makes it read again.
* ``list_runs`` / ``stalled_runs``: cross-partition queries on indexed fields (``kind``,
  ``status``, ``created``, ``runId``; ``active``, ``updated``) with composite indexes for their
  ``ORDER BY``, read page by page with continuation tokens until the page is full or the
  results end. Cursors are keyset positions (created, run id), opaque to callers.
* Errors: 429s are retried by the SDK after the retry-after the service sends; connection
  errors 3 times; what is left leaves as ``TransientBackendError`` / ``PermanentBackendError``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from flowcraft.azure import _items as it
from flowcraft.azure._claims import Claim, ClaimBatches, attempt_item, create_new
from flowcraft.azure._errors import Refused, edge
from flowcraft.azure._schema import ensure_containers, if_not_exists
from flowcraft.core import ports
from flowcraft.core.aio import BackgroundTasks
from flowcraft.core.errors import TransientBackendError

from azure.core import MatchConditions

__all__ = ["CosmosDbContext"]

_log = logging.getLogger("flowcraft.azure")

#: A save's rows above this many bytes go to journal parts instead of the run item.
INLINE_BYTES = 256_000
#: The log is folded into a snapshot (in the background) once it passes this many bytes.
COMPACT_BYTES = 400_000
#: The run item's log and sent markers may take this many bytes (``lsz``), checked by every
#: save's filter predicate: the other fields are at most a few values of ``VALUE_BYTES`` each,
#: so the run item stays under Cosmos DB's 2 MB.
LOG_LIMIT = 1_200_000
#: Compactions a save may wait for before it gives up (TransientBackendError).
_SAVE_COMPACTIONS = 3
#: Bytes a sent marker adds to the run item (``"x<40 hex>":1,``).
_MARKER_BYTES = 48
#: Reads that found a part missing (written after the query passed) retry this many times.
_READ_RETRIES = 20
#: Runs whose sent markers this store remembers (the most recently marked first out).
_MARKED_RUNS = 4096

Item = dict[str, Any]


class CosmosDbContext:
    """The run store of one namespace on Cosmos DB (implements ``ports.RunStore``).

    Args:
        cosmos_client: An ``azure.cosmos.aio.CosmosClient`` (the caller closes it).
        cosmos_database_name: The database.
        context_container_name: The container of the runs' state (``/runId``).
        status_container_name: The container of idempotency keys (``/key``).
    """

    def __init__(
        self,
        *,
        cosmos_client: Any,  # noqa: ANN401 (azure.cosmos.aio.CosmosClient)
        cosmos_database_name: str,
        context_container_name: str = "workflow-contexts",
        status_container_name: str = "workflow-statuses",
    ) -> None:
        self.client = cosmos_client
        self.database_name = cosmos_database_name
        self.context_container_name = context_container_name
        self.status_container_name = status_container_name
        database = cosmos_client.get_database_client(cosmos_database_name)
        self._runs = database.get_container_client(context_container_name)
        self._keys = database.get_container_client(status_container_name)
        self._compacting: set[str] = set()
        self._tasks = BackgroundTasks(_log, "background compaction or clean-up")
        self._claims = ClaimBatches(self._runs, alone=self._claim_alone, spawn=self._spawn)
        # run id -> ids of messages this store's own writes marked sent (bounded LRU)
        self._marked: OrderedDict[str, set[str]] = OrderedDict()
        # run id -> saves in flight that mark messages sent: their ids, done when they end
        self._saving: dict[str, list[tuple[frozenset[str], asyncio.Future[None]]]] = {}

    @property
    def container(self) -> Any:  # noqa: ANN401
        """The contexts container (the queue offloads large bodies into it)."""
        return self._runs

    # ------------------------------------------------------------------ lifecycle

    async def ensure_schema(self) -> None:
        """Create the database and the two containers unless they exist (idempotent)."""
        with edge(f"create database {self.database_name}"):
            database = await if_not_exists(
                lambda: self.client.create_database_if_not_exists(self.database_name)
            )
        await ensure_containers(database, self.context_container_name, self.status_container_name)

    async def close(self) -> None:
        """Finish background compactions and clean-ups (the client is the caller's)."""
        await self._tasks.wait(until_empty=True)

    def _spawn(self, work: Any) -> None:  # noqa: ANN401 (a coroutine)
        self._tasks.spawn(work)

    # ------------------------------------------------------------------ I/O helpers

    async def _query(
        self,
        container: Any,  # noqa: ANN401 (an aio ContainerProxy)
        sql: str,
        params: Mapping[str, object],
        pk: str | None,
    ) -> list[Item]:
        """Every item of a query, page by page (continuation tokens) to the end."""
        parameters = [{"name": n, "value": v} for n, v in params.items()]
        found: list[Item] = []
        with edge("query"):
            pager = container.query_items(sql, parameters=parameters, partition_key=pk)
            async for page in pager.by_page():
                found += [item async for item in page]
        return found

    async def _items(self, run_id: str) -> list[Item]:
        """The run item and its snapshot and journal parts."""
        return await self._query(
            self._runs,
            "SELECT * FROM c WHERE c.runId = @r AND (c.kind = 'run' OR c.kind = 'part')",
            {"@r": run_id}, run_id,
        )  # fmt: skip

    async def _run_item(self, run_id: str) -> Item | None:
        found = await self._query(
            self._runs, "SELECT * FROM c WHERE c.runId = @r AND c.id = @id",
            {"@r": run_id, "@id": it.run_item_id(run_id)}, run_id,
        )  # fmt: skip
        return found[0] if found else None

    async def _write_chunks(self, run_id: str, blobs: it.Blobs) -> None:
        """Write the chunks of large values (upsert: a chunk's id is its content's hash)."""

        async def put(item_id: str, data: str) -> None:
            item = {"id": item_id, "runId": run_id, "kind": "chunk", "d": data}
            with edge(f"run {run_id}: write chunk"):
                await self._runs.upsert_item(item)

        await asyncio.gather(*(put(i, d) for i, d in blobs.chunks.items()))

    async def _chunks(self, run_id: str, texts: Iterable[str]) -> dict[str, str]:
        """The chunks the stored ``texts`` refer to (by item id; none read for small texts)."""
        ids = sorted({ref for text in texts for ref in it.refs(text)})
        sql = "SELECT c.id, c.d FROM c WHERE c.runId = @r AND ARRAY_CONTAINS(@ids, c.id)"
        pages = await asyncio.gather(*(
            self._query(self._runs, sql, {"@r": run_id, "@ids": ids[i : i + 100]}, run_id)
            for i in range(0, len(ids), 100)
        ))  # fmt: skip
        return {str(item["id"]): str(item["d"]) for page in pages for item in page}

    async def _record(self, item: Item) -> ports.RunRecord:
        """The run record of a run item, large fields read from their chunks."""
        run_id = str(item["runId"])
        texts = [str(item.get(name) or "") for name in it.RECORD_TEXTS]
        for _ in range(_READ_RETRIES):
            chunks = await self._chunks(run_id, texts) if any(map(it.refs, texts)) else {}
            try:
                return it.run_record(item, chunks)
            except it.MissingChunkError:
                await asyncio.sleep(0.05)
        raise TransientBackendError(f"run {run_id}: a chunk of its record is missing")

    async def _create_parts(self, run_id: str, prefix: str, rows: Sequence[it.Row]) -> int:
        parts = it.pack_rows(rows)

        async def put(index: int, part: list[it.Row]) -> None:
            item = {"id": f"{prefix}:{index}", "runId": run_id, "kind": "part", "rows": part}
            with edge(f"run {run_id}: write part"):
                await self._runs.upsert_item(item)

        await asyncio.gather(*(put(i, p) for i, p in enumerate(parts)))
        return len(parts)

    async def _delete_ids(self, run_id: str, ids: Collection[str]) -> None:
        async def delete(item_id: str) -> None:
            try:
                with edge(f"run {run_id}: delete {item_id}"):
                    await self._runs.delete_item(item_id, partition_key=run_id)
            except Refused:
                pass

        await asyncio.gather(*(delete(i) for i in ids))

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        record: ports.RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> ports.RunRecord:
        """Create the run item (version 1) unless the run or its idempotency key exists."""
        now = time.time()
        stamped = replace(record, created_at=record.created_at or now, updated_at=now)
        blobs = it.Blobs()
        item = it.run_item(stamped, header, uuid.uuid4().hex, blobs)
        rows = blobs.rows(it.delta_rows(1, records or {}, {}, (), ()))
        await self._write_chunks(record.run_id, blobs)
        if rows:
            item["log"] = {it.log_key(1): await self._entry(record.run_id, 1, rows)}
        created, _new = await self._create(record, item)
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
        """Create the run item at version 2 with its first decision: one ``create_item``.

        As ``create_run`` followed by a save of version 2 (``ports.RunStarter``): the item
        is born with the save's log entry (its records, context and outbox; journal parts
        and chunks written first, as a save writes them), status, output and errors.
        ``(existing record, False)`` if the run or its idempotency key exists.
        """
        now = time.time()
        stamped = replace(record, status=status, output=output, errors=tuple(errors),
                          created_at=record.created_at or now, updated_at=now)  # fmt: skip
        blobs = it.Blobs()
        item = it.run_item(stamped, header, uuid.uuid4().hex, blobs)
        rows = blobs.rows(it.delta_rows(2, records, context, outbox, ()))
        await self._write_chunks(record.run_id, blobs)
        entry = await self._entry(record.run_id, 2, rows)
        item |= {"ver": 2, "log": {it.log_key(2): entry},
                 "lsz": it.stored_size(it.dumps(entry)) + 16}  # fmt: skip
        return await self._create(record, item)

    async def _create(self, record: ports.RunRecord, item: Item) -> tuple[ports.RunRecord, bool]:
        """Create ``item`` unless the run or its key exists; the record, and if it was new."""
        if record.idempotency_key is not None:
            owner = await self._claim_key(record.idempotency_key, item)
            if owner != record.run_id:
                return await self._finish_create(owner), False
        return await self._create_item(item)

    async def _claim_key(self, key: str, item: Item) -> str:
        """The run id that holds idempotency ``key`` (this one if the key was free)."""
        name = it.owner_hash(key)
        try:
            with edge("create idempotency key"):
                await self._keys.create_item({"id": name, "key": name, "run": item})
        except Refused:
            found = await self._query(
                self._keys, "SELECT * FROM c WHERE c.key = @k", {"@k": name}, name
            )
            if not found:
                raise TransientBackendError(
                    f"idempotency key {key!r}: held, but not readable"
                ) from None
            intent: Item = found[0]["run"]
            await self._create_item(intent)  # finish a creator that died half-way
            return str(intent["runId"])
        return str(item["runId"])

    async def _create_item(self, item: Item) -> tuple[ports.RunRecord, bool]:
        """The record of the run ``item`` creates, and whether this call created it."""
        try:
            with edge(f"create run {item['runId']}"):
                await self._runs.create_item(item)
        except Refused:
            return await self._finish_create(str(item["runId"])), False
        return await self._record(item), True

    async def _finish_create(self, run_id: str) -> ports.RunRecord:
        found = await self.get_run(run_id)
        if found is None:
            raise TransientBackendError(f"run {run_id}: created elsewhere but not readable yet")
        return found

    async def get_run(self, run_id: str) -> ports.RunRecord | None:
        """The run's record, or None."""
        item = await self._run_item(run_id)
        return await self._record(item) if item is not None else None

    _FIELDS = (
        "c.runId, c.blueprint_id, c.blueprint_version, c.blueprint_digest, c.status, "
        "c.input, c.out, c.err, c.parent, c.idempotency_key, c.created, c.updated"
    )

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ports.RunPage:
        """Runs newest first (creation time, then id), optionally of one status."""
        where = ["c.kind = 'run'"]
        params: dict[str, object] = {}
        if status is not None:
            where.append("c.status = @s")
            params["@s"] = status
        if cursor is not None:
            created, run_id = it.decode_cursor(cursor)
            where.append("(c.created < @c OR (c.created = @c AND c.runId < @id))")
            params |= {"@c": created, "@id": run_id}
        # Only fixed clauses are joined; every value is a parameter.
        sql = (f"SELECT {self._FIELDS} FROM c WHERE {' AND '.join(where)} "  # noqa: S608
               "ORDER BY c.created DESC, c.runId DESC")  # fmt: skip
        items = await self._first(sql, params, limit + 1)
        page = list(await asyncio.gather(*(self._record(item) for item in items[:limit])))
        more = len(items) > limit and page
        last = page[-1] if page else None
        next_cursor = it.encode_cursor(last.created_at, last.run_id) if more and last else None
        return ports.RunPage(runs=tuple(page), cursor=next_cursor)

    async def _first(self, sql: str, params: Mapping[str, object], want: int) -> list[Item]:
        """The first ``want`` items of a cross-partition query, following continuations."""
        parameters = [{"name": n, "value": v} for n, v in params.items()]
        found: list[Item] = []
        with edge("query runs"):
            pager = self._runs.query_items(sql, parameters=parameters,
                                           max_item_count=min(want, 1000))  # fmt: skip
            async for page in pager.by_page():
                found += [item async for item in page]
                if len(found) >= want:
                    break
        return found[:want]

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Unfinished runs whose state was last saved before ``updated_before``."""
        sql = ("SELECT c.runId, c.updated FROM c WHERE c.kind = 'run' AND "
               "(c.active = 'pending' OR c.active = 'running' OR c.active = 'awaiting') "
               "AND c.updated < @b ORDER BY c.updated ASC")  # fmt: skip
        items = await self._first(sql, {"@b": updated_before}, limit)
        return [str(item["runId"]) for item in items]

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> ports.StoredState | None:
        """The run's state as of its last save (see the port)."""
        for attempt in range(_READ_RETRIES):
            items = await self._items(run_id)
            run = next((i for i in items if i["kind"] == "run"), None)
            if run is None:
                return None
            parts = {str(i["id"]): i["rows"] for i in items if i["kind"] != "run"}
            folded = it.fold(run, parts)
            if folded is not None:
                wanted = set(keys)
                records = {
                    key: text
                    for key, (text, version) in folded.records.items()
                    if since is None or version > since or key in wanted
                }
                texts = [str(run["h"]), *records.values(), *folded.context.values(),
                         *(str(run.get(name) or "") for name in it.RECORD_TEXTS)]  # fmt: skip
                if since is None:
                    texts += folded.outbox.values()
                chunks = await self._chunks(run_id, texts) if any(map(it.refs, texts)) else {}
                try:
                    return self._stored(run, folded, records, chunks, since)
                except it.MissingChunkError:
                    pass  # written after the query passed it: read again
            await asyncio.sleep(min(0.2, 0.01 * 2**attempt))
        raise TransientBackendError(f"run {run_id}: its parts kept changing under the read")

    @staticmethod
    def _stored(
        run: Item,
        folded: it.Folded,
        records: Mapping[str, str],
        chunks: Mapping[str, str],
        since: int | None,
    ) -> ports.StoredState:
        def value(text: str) -> object:
            return json.loads(it.resolve(text, chunks))

        return ports.StoredState(
            version=int(run["ver"]),
            header=value(str(run["h"])),  # type: ignore[arg-type]
            records={key: value(text) for key, text in records.items()},
            context={key: value(text) for key, text in folded.context.items()},
            outbox=folded.messages(run.get("sent") or {}, chunks) if since is None else (),
            record=it.run_record(run, chunks),
            since=since,
        )

    async def _entry(self, run_id: str, version: int, rows: list[it.Row]) -> Item:
        """The log entry of a save: its rows inline, or journal parts written first."""
        if it.rows_size(rows) <= INLINE_BYTES:
            return {"rows": rows}
        nonce = uuid.uuid4().hex[:16]
        count = await self._create_parts(run_id, f"j:{version}:{nonce}", rows)
        return {"n": count, "nonce": nonce}

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
        """Compare-and-set the state: one conditional patch of the run item (see the module)."""
        with self._marking(run_id, sent):
            if outcomes and not await self._commit_all(run_id, outcomes):
                return False
            version = expected_version + 1
            blobs = it.Blobs()
            rows = blobs.rows(it.delta_rows(version, records, context_writes, outbox, sent))
            head, out, err = (blobs.put(it.dumps(v)) for v in (header, output, list(errors)))
            await self._write_chunks(run_id, blobs)
            entry = await self._entry(run_id, version, rows)
            size = it.stored_size(it.dumps(entry)) + 16  # the entry as a field of the log
            nonce = uuid.uuid4().hex
            now = time.time()
            operations: list[Item] = [
                {"op": "set", "path": "/ver", "value": version},
                {"op": "set", "path": "/h", "value": head},
                {"op": "set", "path": f"/log/{it.log_key(version)}", "value": entry},
                {"op": "set", "path": "/status", "value": status},
                {"op": "set", "path": "/active",
                 "value": None if status in it.TERMINAL else status},
                {"op": "set", "path": "/updated", "value": now},
                {"op": "set", "path": "/out", "value": out},
                {"op": "set", "path": "/err", "value": err},
                {"op": "set", "path": "/w", "value": nonce},
                {"op": "incr", "path": "/lsz", "value": size},
            ]  # fmt: skip
            saved = await self._guarded_save(run_id, expected_version, operations, nonce, size)
            if saved is None:
                if "nonce" in entry:
                    prefix = f"j:{version}:{entry['nonce']}"
                    self._spawn(
                        self._delete_ids(run_id, [f"{prefix}:{i}" for i in range(entry["n"])])
                    )
                return False
            self._after_save(run_id, saved)
            self._note_marked(run_id, sent, outbox)
            if claims:
                await self._claim_after(run_id, claims)
            return True

    async def _guarded_save(
        self, run_id: str, expected: int, operations: list[Item], nonce: str, size: int
    ) -> Item | None:
        """The patched run item, or None if the version moved on.

        The filter predicate admits the patch only while the log leaves room for the entry
        (``lsz``, kept by every save and sent marker, never by this process's memory): a
        refusal with the version still ``expected`` means "compact first, then again".
        """
        for _ in range(_SAVE_COMPACTIONS):
            saved = await self._patch_save(run_id, expected, operations, nonce, size)
            if saved is not None:
                return saved
            current = await self._run_item(run_id)
            if current is None or int(current["ver"]) != expected:
                return None
            if int(current.get("lsz") or 0) + size > LOG_LIMIT or "lsz" not in current:
                await self._compact(run_id)
        raise TransientBackendError(f"run {run_id}: the run item stayed full (compaction lost)")

    async def _patch_save(
        self, run_id: str, expected: int, operations: list[Item], nonce: str, size: int
    ) -> Item | None:
        """The patched run item, or None if the compare-and-set was refused."""
        predicate = f"FROM c WHERE c.ver = {int(expected)} AND c.lsz <= {LOG_LIMIT - size}"
        try:
            with edge(f"save run {run_id}"):
                saved: Item = await self._runs.patch_item(
                    it.run_item_id(run_id), partition_key=run_id, patch_operations=operations,
                    filter_predicate=predicate,
                )  # fmt: skip
        except Refused:
            return None
        except TransientBackendError:
            current = await self._run_item(run_id)  # did the lost answer's save land?
            if current is not None and current.get("w") == nonce:
                return current
            raise
        return saved

    def _after_save(self, run_id: str, saved: Item) -> None:
        if int(saved.get("lsz") or 0) > COMPACT_BYTES and run_id not in self._compacting:
            self._compacting.add(run_id)
            self._spawn(self._compact(run_id))

    async def _claim_after(self, run_id: str, claims: Sequence[tuple[str, str, float]]) -> None:
        now = time.time()
        items = {a: attempt_item(run_id, a, owner, now + lease) for a, owner, lease in claims}
        await create_new(self._runs, run_id, list(items.values()))

    # ------------------------------------------------------------------ compaction

    async def _compact(self, run_id: str) -> None:
        """Fold the log into a new snapshot (replace with the etag read; 412: again)."""
        try:
            for _ in range(5):
                if await self._compact_once(run_id):
                    return
        finally:
            self._compacting.discard(run_id)

    async def _compact_once(self, run_id: str) -> bool:
        items = await self._items(run_id)
        run = next((i for i in items if i["kind"] == "run"), None)
        if run is None:
            return True
        folded = it.fold(run, {str(i["id"]): i["rows"] for i in items if i["kind"] != "run"})
        if folded is None:
            return False
        nonce = uuid.uuid4().hex[:16]
        version = folded.version
        count = await self._create_parts(
            run_id, f"s:{version}:{nonce}", folded.snapshot_rows(run.get("sent") or {})
        )
        body = {k: v for k, v in run.items() if not k.startswith("_")}
        body |= {"log": {}, "sent": {}, "snap": {"ver": version, "nonce": nonce, "n": count},
                 "prev": run.get("snap"), "lsz": 0}  # fmt: skip
        try:
            with edge(f"run {run_id}: compact"):
                await self._runs.replace_item(
                    run["id"], body, etag=run["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
        except Refused:
            await self._delete_ids(run_id, [f"s:{version}:{nonce}:{i}" for i in range(count)])
            return False
        keep = {f"s:{version}:{nonce}:"}
        prev = run.get("snap")
        if isinstance(prev, Mapping):
            keep.add(f"s:{prev['ver']}:{prev['nonce']}:")
        stale = [str(i["id"]) for i in items if i["kind"] != "run"
                 and not any(str(i["id"]).startswith(k) for k in keep)
                 and int(str(i["id"]).split(":")[1]) <= version]  # fmt: skip
        self._spawn(self._delete_ids(run_id, stale))
        return True

    # ------------------------------------------------------------------ outbox

    @contextlib.contextmanager
    def _marking(self, run_id: str, sent: Sequence[str]) -> Iterator[None]:
        """A save of ``run_id`` that marks ``sent`` is in flight (removals of them wait)."""
        if not sent:
            yield
            return
        done = asyncio.get_running_loop().create_future()
        entry = (frozenset(sent), done)
        self._saving.setdefault(run_id, []).append(entry)
        try:
            yield
        finally:
            done.set_result(None)
            waiting = self._saving[run_id]
            waiting.remove(entry)
            if not waiting:
                del self._saving[run_id]

    def _note_marked(
        self, run_id: str, sent: Iterable[str], outbox: Sequence[ports.Message] = ()
    ) -> None:
        """Remember messages a committed write of this store marked sent on ``run_id``.

        A marker never goes away (compaction drops the message from the outbox for good),
        so removing such a message again would write nothing new. Messages the same save put
        in the outbox are not marked by it (``_items.delta_rows``) and are forgotten here.
        """
        added = {m.id for m in outbox}
        marked = self._marked.pop(run_id, set())
        marked.difference_update(added)
        marked.update(m for m in sent if m not in added)
        if marked:
            self._marked[run_id] = marked
            while len(self._marked) > _MARKED_RUNS:
                self._marked.popitem(last=False)

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Mark sent messages on their runs (patches of 9 markers and ``lsz``, no condition).

        Messages this store already marked sent (with a save's ``sent`` or an earlier
        removal) cost no request: the run item keeps their markers. A removal of messages
        that a save of this store in flight marks sent waits for that save first.
        """
        saves = {done for run_id, ids in sent.items()
                 for marks, done in self._saving.get(run_id, ())
                 if not marks.isdisjoint(ids)}  # fmt: skip
        if saves:
            await asyncio.wait(saves)

        async def mark(run_id: str, ids: list[str]) -> None:
            operations: list[Item] = [
                {"op": "set", "path": f"/sent/{it.sent_key(m)}", "value": 1} for m in ids
            ]
            operations.append({"op": "incr", "path": "/lsz", "value": _MARKER_BYTES * len(ids)})
            try:
                with edge(f"run {run_id}: remove outbox"):
                    await self._runs.patch_item(it.run_item_id(run_id), partition_key=run_id,
                                                patch_operations=operations)  # fmt: skip
            except Refused:
                return  # an unknown run
            self._note_marked(run_id, ids)

        calls = [
            mark(run_id, unique[i : i + 9])
            for run_id, ids in sent.items()
            for done in [self._marked.get(run_id, set())]
            for unique in [[m for m in dict.fromkeys(ids) if m not in done]]
            for i in range(0, len(unique), 9)
        ]
        await asyncio.gather(*calls)

    # ------------------------------------------------------------------ attempts

    async def _attempt_item(self, run_id: str, attempt: str) -> Item | None:
        found = await self._query(
            self._runs, "SELECT * FROM c WHERE c.runId = @r AND c.id = @id",
            {"@r": run_id, "@id": it.attempt_id(run_id, attempt)}, run_id,
        )  # fmt: skip
        return found[0] if found else None

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> ports.AttemptClaim:
        """Take the lease: a create, else a patch admitted for the owner or an expired lease.

        The creates of this loop turn's claims go out in one batch per run (``_claims``).
        """
        return await self._claims.claim(Claim(run_id, attempt, owner, lease))

    async def _claim_alone(self, claim: Claim, exists: bool) -> ports.AttemptClaim:
        """One claim: a create (skipped if ``exists``), else the patch, else BUSY or DONE."""
        run_id, attempt, owner, lease = claim.run_id, claim.attempt, claim.owner, claim.lease
        for _ in range(_READ_RETRIES):
            now = time.time()
            if not exists:
                try:
                    with edge(f"run {run_id}: claim {attempt}"):
                        await self._runs.create_item(
                            attempt_item(run_id, attempt, owner, now + lease)
                        )
                    return ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED,
                                              lease_until=now + lease)  # fmt: skip
                except Refused:
                    pass
            exists = False
            predicate = (f"FROM c WHERE IS_NULL(c.outcome) AND "
                         f"(c.oh = '{it.owner_hash(owner)}' OR c.lease <= {now!r})")  # fmt: skip
            operations = [{"op": "set", "path": "/lease", "value": now + lease},
                          {"op": "set", "path": "/oh", "value": it.owner_hash(owner)}]  # fmt: skip
            try:
                with edge(f"run {run_id}: claim {attempt}"):
                    await self._runs.patch_item(
                        it.attempt_id(run_id, attempt), partition_key=run_id,
                        patch_operations=operations, filter_predicate=predicate,
                    )  # fmt: skip
                return ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + lease)
            except Refused:
                item = await self._attempt_item(run_id, attempt)
            if item is None:
                continue  # deleted between the two: try again
            if item.get("outcome") is not None:
                return ports.AttemptClaim(status=ports.ClaimStatus.DONE,
                                          outcome=await self._outcome(run_id, item))  # fmt: skip
            return ports.AttemptClaim(
                status=ports.ClaimStatus.BUSY, lease_until=float(item["lease"])
            )
        raise TransientBackendError(f"run {run_id}: could not claim attempt {attempt}")

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease: a patch admitted only for that owner, no outcome."""
        predicate = f"FROM c WHERE IS_NULL(c.outcome) AND c.oh = '{it.owner_hash(owner)}'"
        try:
            with edge(f"run {run_id}: extend {attempt}"):
                await self._runs.patch_item(
                    it.attempt_id(run_id, attempt), partition_key=run_id,
                    patch_operations=[{"op": "set", "path": "/lease",
                                       "value": time.time() + lease}],
                    filter_predicate=predicate,
                )  # fmt: skip
        except Refused:
            return False
        return True

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer wins: a patch admitted while no outcome stands; the standing one back."""
        blobs = it.Blobs()
        text = blobs.put(base64.b64encode(outcome).decode())
        await self._write_chunks(run_id, blobs)
        for _ in range(_READ_RETRIES):
            try:
                with edge(f"run {run_id}: commit {attempt}"):
                    await self._runs.patch_item(
                        it.attempt_id(run_id, attempt), partition_key=run_id,
                        patch_operations=[{"op": "set", "path": "/outcome", "value": text}],
                        filter_predicate="FROM c WHERE IS_NULL(c.outcome)",
                    )  # fmt: skip
                return outcome
            except Refused as refused:
                if refused.what == "missing":
                    if await self._create_committed(run_id, attempt, text):
                        return outcome
                    continue
            item = await self._attempt_item(run_id, attempt)
            if item is not None and item.get("outcome") is not None:
                return await self._outcome(run_id, item)
        raise TransientBackendError(f"run {run_id}: could not commit attempt {attempt}")

    async def _outcome(self, run_id: str, item: Item) -> bytes:
        """The committed outcome of an attempt item, read from its chunks if it is large."""
        text = str(item["outcome"])
        for _ in range(_READ_RETRIES):
            chunks = await self._chunks(run_id, [text]) if it.refs(text) else {}
            try:
                return base64.b64decode(it.resolve(text, chunks))
            except it.MissingChunkError:
                await asyncio.sleep(0.05)
        raise TransientBackendError(f"run {run_id}: a chunk of an outcome is missing")

    async def _create_committed(self, run_id: str, attempt: str, text: str) -> bool:
        item = attempt_item(run_id, attempt, "", 0.0) | {"outcome": text, "oh": ""}
        try:
            with edge(f"run {run_id}: commit {attempt}"):
                await self._runs.create_item(item)
        except Refused:
            return False
        return True

    async def _commit_all(self, run_id: str, outcomes: Sequence[tuple[str, bytes]]) -> bool:
        """Commit each outcome; True if every one of them is the one that stands."""
        unique = list({attempt: (attempt, o) for attempt, o in reversed(outcomes)}.values())
        standing = await asyncio.gather(*(self.commit_attempt(run_id, a, o) for a, o in unique))
        return all(s == o for s, (_, o) in zip(standing, unique, strict=True))
