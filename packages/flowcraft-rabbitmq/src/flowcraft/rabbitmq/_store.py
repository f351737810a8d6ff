"""``PostgresContext``: the run store (``flowcraft.core.ports.RunStore``) on PostgreSQL.

Spec sheet
----------
* Driver: psycopg 3 (async) through a ``psycopg_pool.AsyncConnectionPool`` in autocommit
  mode. Pass a DSN (the store owns and closes its pool) or your own pool (you close it).
* Atomicity: every port method is ONE SQL statement (data-modifying CTEs where several tables
  change), so each is atomic by itself and costs one round trip. ``save_state`` hangs every
  write (changed records, context patch, outbox rows, run record, status row) off the
  versioned ``UPDATE states ... WHERE version = expected``: a stale version matches no row and
  writes nothing. ``claim_attempt`` and ``commit_attempt`` are ``INSERT ... ON CONFLICT DO
  UPDATE ... WHERE ... RETURNING`` (plus a read when nothing was returned); calls made in one
  event-loop turn share one statement.
* Context: ``context_data = (context_data || sets) - deletes``: writes are per key and never a
  read-modify-write of the whole document; concurrent writers of different keys lose nothing.
* Clock: leases use the database clock (``clock_timestamp()``); ``updated_at`` is ``now()``.
  ``stalled_runs(updated_before=...)`` compares a caller's epoch with the database clock.
* ``flowcraft_statuses.status_data`` mirrors the run status as ``{"status": ...}`` with
  ``updated_at`` so the original adapter's schema (and its reconciler query) stays meaningful.
* Lock order: statements that lock many rows of one table (claims and commits of a batch,
  the outcomes and claims a save carries, the outbox rows of many runs) take them sorted by
  key, and ``save_state`` locks the run's state row before any attempt row (its outcomes
  and its claims), so two such statements never wait on each other in a cycle (PostgreSQL
  would break it with ``40P01 deadlock_detected``, which leaves as a
  ``TransientBackendError``).
* Errors: psycopg errors leave as ``TransientBackendError`` / ``PermanentBackendError``.
  Idempotent operations retry once on a transient error (a pooled connection that died while
  idle, e.g. after a server restart or ``pg_terminate_backend``); ``save_state`` does not
  (its first attempt may have committed) and raises ``TransientBackendError``.
* Schema: ``ensure_schema()`` runs the DDL of ``_schema.py`` idempotently under an advisory
  lock (safe from many processes at once); ``drop_schema()`` drops the tables (tests).
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

import psycopg
from flowcraft.core import RunStatus, ports
from flowcraft.core.backends import notification_payload
from flowcraft.core.errors import TransientBackendError
from flowcraft.rabbitmq import _schema as q
from flowcraft.rabbitmq._errors import postgres_errors
from flowcraft.rabbitmq._notify import PostgresNotifications, channel_name
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresContext"]

_T = TypeVar("_T")
_Row = tuple[Any, ...]
_SCHEMA_LOCK = zlib.crc32(b"flowcraft.rabbitmq.schema")
#: The longest ``pg_notify`` payload PostgreSQL takes (bytes): "shorter than 8000".
_PAYLOAD_LIMIT = 7999


class PostgresContext:
    """The run store of one namespace on PostgreSQL (implements ``ports.RunStore``).

    Args:
        dsn_or_pool: A libpq connection string / URL, or an ``AsyncConnectionPool`` whose
            connections are in autocommit mode.
        table_prefix: Prefix of the default table names (``{prefix}_contexts`` ...).
        context_table: Name of the context table (default ``{prefix}_contexts``).
        status_table: Name of the status table (default ``{prefix}_statuses``).
        run_table: Name of the run record table (default ``{prefix}_runs``).
        state_table: Name of the state document table (default ``{prefix}_states``).
        outbox_table: Name of the outbox table (default ``{prefix}_outbox``).
        attempt_table: Name of the attempt table (default ``{prefix}_attempts``).
        record_table: Name of the table of the runs' records (default ``{prefix}_records``).
        min_size: Connections the owned pool keeps open.
        max_size: Most connections the owned pool opens.
        connect_timeout: Seconds to wait for a connection before a ``TransientBackendError``.
    """

    def __init__(
        self,
        dsn_or_pool: str | AsyncConnectionPool[Any],
        *,
        table_prefix: str = "flowcraft",
        context_table: str | None = None,
        status_table: str | None = None,
        run_table: str | None = None,
        state_table: str | None = None,
        outbox_table: str | None = None,
        attempt_table: str | None = None,
        record_table: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self.tables = q.TableNames.with_prefix(
            table_prefix,
            contexts=context_table,
            statuses=status_table,
            runs=run_table,
            states=state_table,
            outbox=outbox_table,
            attempts=attempt_table,
            records=record_table,
        )
        self._q = q.Queries.render(self.tables)
        self._claims: list[_Claim] = []
        self._commits: list[_Commit] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._owns_pool = isinstance(dsn_or_pool, str)
        self._pool = _make_pool(dsn_or_pool, min_size, max_size, connect_timeout)
        self._connect_timeout = connect_timeout
        self._opened = not self._owns_pool
        self._open_lock = asyncio.Lock()
        self._channel = channel_name(self.tables.runs)
        conninfo = dsn_or_pool if isinstance(dsn_or_pool, str) else dsn_or_pool.conninfo
        options = {} if isinstance(dsn_or_pool, str) else dsn_or_pool.kwargs
        self._notifications = PostgresNotifications(
            conninfo, options, self._channel, connect_timeout
        )

    #: The largest notice a terminal save's notification carries (``ports.ResultNotifier``):
    #: ``pg_notify``'s limit, less room for the run id.
    notice_limit = _PAYLOAD_LIMIT - 99

    def watch(self, run_id: str) -> AbstractAsyncContextManager[ports.RunWatch]:
        """Subscribe to the end of ``run_id`` (``ports.RunNotifier``; ``LISTEN/NOTIFY``)."""
        return self._notifications.watch(run_id)

    # ------------------------------------------------------------------ lifecycle

    async def ensure_schema(self) -> None:
        """Create every table and index if missing (idempotent; safe concurrently)."""
        with postgres_errors("ensure_schema"):
            async with (await self._ready()).connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                check, before, after = q.outbox_migration(self.tables)
                cur = await conn.execute(check, (self.tables.outbox,))
                migrate = await cur.fetchone() is not None
                statements = q.ddl(self.tables)
                if migrate:  # the outbox of the one-row-per-message shape
                    statements = [*before, *statements, *after]
                for statement in statements:
                    await conn.execute(statement)
                await self._convert_legacy_states(conn)

    async def _convert_legacy_states(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """States of earlier builds (one whole document) become a header and records."""
        find, store = q.legacy_states_sql(self.tables)
        cur = await conn.execute(find)
        for run_id, _version, document in await cur.fetchall():
            header, records = ports.records_from_document(document)
            await conn.execute(store, (Jsonb(header), run_id, Jsonb(records)))

    async def drop_schema(self) -> None:
        """Drop the seven tables (for tests and throwaway namespaces)."""
        names = [self.tables.ident(field) for field in _TABLE_FIELDS]
        statement = sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(names))
        await self._execute("drop_schema", statement, (), retry=True)

    async def close(self) -> None:
        """Stop listening; close the pool if this store created it."""
        await self._notifications.close()
        if self._owns_pool and self._opened:
            await self._pool.close()

    async def _ready(self) -> AsyncConnectionPool[Any]:
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self._pool.open(wait=True, timeout=self._connect_timeout)
                    self._opened = True
        return self._pool

    # ------------------------------------------------------------------ runs

    async def create_run(
        self,
        record: ports.RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> ports.RunRecord:
        """Create the run (state version 1, empty context) unless its id or key exists."""
        params = (
            *_record_params(record),
            Jsonb(header),
            Jsonb(records or {}),
            Jsonb({"status": record.status}),
        )
        row = await self._fetchone("create_run", self._q.create_run, params, retry=True)
        if row is None:
            find = (record.run_id, record.idempotency_key, record.run_id)
            row = await self._fetchone("create_run", self._q.find_run, find, retry=True)
        if row is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise TransientBackendError(f"create_run: run {record.run_id!r} vanished, retry")
        return _record(row)

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
        """Create the run already started (``ports.RunStarter``): one statement, version 2.

        Retried once on a transient error: a first attempt that committed unseen makes the
        second find the run (``(existing, False)``), as a retried start would.
        """
        started = replace(record, status=status, output=output, errors=tuple(errors))
        params = (
            *_record_params(started),
            Jsonb(header),
            Jsonb(records),
            Jsonb(context),
            _json_pairs((m.id, m.body) for m in outbox),
            Jsonb({"status": status}),
            self._channel,
            notification_payload(record.run_id, None, notice_limit=0),
            RunStatus(status).terminal,
        )
        query = self._q.create_started_run
        row = await self._fetchone("create_started_run", query, params, retry=True)
        if row is not None:
            return _record(row), True
        find = (record.run_id, record.idempotency_key, record.run_id)
        row = await self._fetchone("create_started_run", self._q.find_run, find, retry=True)
        if row is None:  # pragma: no cover - the conflicting row was deleted meanwhile
            raise TransientBackendError(f"create_started_run: run {record.run_id!r} vanished")
        return _record(row), False

    async def read_result(self, run_id: str, keys: Collection[str]) -> ports.StoredResult | None:
        """Version, header, context and the records among ``keys`` (``ports.ResultReader``)."""
        params = (list(keys), run_id)
        row = await self._fetchone("read_result", self._q.read_result, params, retry=True)
        if row is None:
            return None
        version, header, context, found = row
        return ports.StoredResult(version=version, header=header, records=found, context=context)

    async def get_run(self, run_id: str) -> ports.RunRecord | None:
        """The run's record, or None."""
        params = (run_id, None, run_id)
        row = await self._fetchone("get_run", self._q.find_run, params, retry=True)
        return None if row is None else _record(row)

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ports.RunPage:
        """Runs, newest first (keyset pagination on created_at, run_id)."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        params: list[object] = [] if status is None else [status]
        if cursor is not None:
            params.extend(_decode_cursor(cursor))
        params.append(limit + 1)
        query = q.list_runs_sql(self.tables, status=status is not None, after=cursor is not None)
        rows = await self._fetchall("list_runs", query, tuple(params))
        page = rows[:limit]
        more = len(rows) > limit
        return ports.RunPage(
            runs=tuple(_record(row) for row in page),
            cursor=_encode_cursor(page[-1]) if more else None,
        )

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Ids of pending/running/awaiting runs saved before ``updated_before``, oldest first."""
        params = (q.active_statuses(), updated_before, limit)
        rows = await self._fetchall("stalled_runs", self._q.stalled_runs, params)
        return [str(row[0]) for row in rows]

    # ------------------------------------------------------------------ state

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> ports.StoredState | None:
        """Header, records, context, outbox and record as of the last save (one snapshot)."""
        whole = since is None
        params = (whole, whole, -1 if since is None else since, list(keys), run_id)
        row = await self._fetchone("load_state", self._q.load_state, params, True)
        if row is None:
            return None
        version, header, context, ids, bodies, records = row[:6]
        return ports.StoredState(
            version=version,
            header=header,
            records=records,
            since=since,
            context=context,
            outbox=_outbox(ids, bodies),
            record=_record(row[6:]),
        )

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
        notice: str | None = None,
    ) -> bool:
        """Compare-and-set the state and apply everything else in the same statement.

        A terminal save's ``pg_notify`` carries ``notice`` when the payload stays within
        PostgreSQL's 8,000 bytes (``ports.ResultNotifier``), else the run id alone.
        """
        sets, deletes = split_context_writes(context_writes)
        params = (
            run_id,
            _json_pairs(sorted(outcomes)),  # rows locked in one order (see the docstring)
            Jsonb(header),
            run_id,
            expected_version,
            len(outcomes),
            Jsonb(records),
            Jsonb(sets),
            json.dumps(deletes),
            bool(sets or deletes),
            _json_pairs((m.id, m.body) for m in outbox),
            json.dumps(sorted(list(claim) for claim in claims)),
            json.dumps(list(sent)),
            status,
            Jsonb(output),
            Jsonb([dict(e) for e in errors]),
            Jsonb({"status": status}),
            self._channel,
            notification_payload(
                run_id, notice, notice_limit=self.notice_limit, payload_limit=_PAYLOAD_LIMIT
            ),
            RunStatus(status).terminal,
        )
        row = await self._fetchone("save_state", self._q.save_state, params, False)
        return row is not None and row[0] == 1

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop these outbox messages of many runs in one statement (idempotent)."""
        runs = {run_id: list(ids) for run_id, ids in sorted(sent.items()) if ids}
        if runs:
            params = (json.dumps(runs),)
            await self._execute("remove_outbox", self._q.remove_outbox, params, True)

    # ------------------------------------------------------------------ attempts

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> ports.AttemptClaim:
        """CLAIMED (new, expired or own lease), BUSY (live foreign lease) or DONE.

        Claims made in the same event-loop turn (a worker handling a batch of deliveries) go
        to the server together: one statement for all of them, one more for those not taken.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ports.AttemptClaim] = loop.create_future()
        self._claims.append(_Claim(run_id, attempt, owner, lease, future))
        if len(self._claims) == 1:
            loop.call_soon(self._send_claims)
        return await future

    def _send_claims(self) -> None:
        claims, self._claims = self._claims, []
        groups: dict[tuple[str, float], list[_Claim]] = {}
        for claim in claims:
            groups.setdefault((claim.owner, claim.lease), []).append(claim)
        for (owner, lease), group in groups.items():
            waiting = [((c.run_id, c.attempt), c.future) for c in group]
            keys = {key for key, _ in waiting}
            self._spawn(_answer(waiting, self._claim_many(owner, lease, keys)))

    async def _claim_many(
        self, owner: str, lease: float, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], ports.AttemptClaim]:
        rows = await self._fetchall(
            "claim_attempt", self._q.claim_many, (owner, lease, json.dumps(sorted(keys))), True
        )
        answers = {
            (row[0], row[1]): ports.AttemptClaim(
                status=ports.ClaimStatus.CLAIMED, lease_until=row[2]
            )
            for row in rows
        }
        rest = [k for k in keys if k not in answers]
        if rest:
            params = (json.dumps(rest),)
            for run_id, attempt, lease_until, outcome in await self._fetchall(
                "claim_attempt", self._q.attempts, params, True
            ):
                answers[run_id, attempt] = (
                    ports.AttemptClaim(status=ports.ClaimStatus.BUSY, lease_until=lease_until)
                    if outcome is None
                    else ports.AttemptClaim(status=ports.ClaimStatus.DONE, outcome=bytes(outcome))
                )
        missing = keys - answers.keys()
        if missing:  # pragma: no cover - attempts are never deleted
            raise TransientBackendError(f"claim_attempt: {sorted(missing)} vanished, retry")
        return answers

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Move ``owner``'s lease to now + ``lease``; False if lost or done."""
        params = (lease, run_id, attempt, owner)
        count = await self._execute("extend_attempt", self._q.extend, params, True)
        return count == 1

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """Record the outcome, first writer wins; the outcome that stands.

        Commits made in the same event-loop turn (workers handing over many outcomes of a
        contended run) go to the server together, as claims do.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._commits.append(_Commit(run_id, attempt, outcome, future))
        if len(self._commits) == 1:
            loop.call_soon(self._send_commits)
        return await future

    def _send_commits(self) -> None:
        commits, self._commits = self._commits, []
        waiting = [((c.run_id, c.attempt), c.future) for c in commits]
        self._spawn(_answer(waiting, self._commit_many(commits)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task kept until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit_many(self, group: list[_Commit]) -> dict[tuple[str, str], bytes]:
        """The outcome that stands for each attempt of ``group`` (the first of duplicates)."""
        first: dict[tuple[str, str], bytes] = {}
        for commit in group:
            first.setdefault((commit.run_id, commit.attempt), commit.outcome)
        params = (_json_triples(dict(sorted(first.items()))),)
        written = await self._fetchall("commit_attempt", self._q.commit_many, params, True)
        standing = {(row[0], row[1]): first[row[0], row[1]] for row in written}
        rest = [key for key in first if key not in standing]
        if rest:
            params = (json.dumps(rest),)
            for run_id, attempt, _lease, outcome in await self._fetchall(
                "commit_attempt", self._q.attempts, params, True
            ):
                if outcome is not None:
                    standing[run_id, attempt] = bytes(outcome)
        missing = first.keys() - standing.keys()
        if missing:  # pragma: no cover - outcomes are never removed
            raise TransientBackendError(f"commit_attempt: {sorted(missing)} vanished, retry")
        return standing

    # ------------------------------------------------------------------ execution

    async def _fetchone(
        self, what: str, query: sql.Composed | bytes, params: Sequence[object], retry: bool
    ) -> _Row | None:
        async def run(conn: psycopg.AsyncConnection[Any]) -> _Row | None:
            cur = await conn.execute(query, params)
            return await cur.fetchone()

        return await self._run(what, run, retry)

    async def _fetchall(
        self, what: str, query: sql.Composed | bytes, params: Sequence[object], retry: bool = True
    ) -> list[_Row]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> list[_Row]:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

        return await self._run(what, run, retry)

    async def _execute(
        self, what: str, query: sql.Composed | bytes, params: Sequence[object], retry: bool
    ) -> int:
        async def run(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(query, params)
            return cur.rowcount

        return await self._run(what, run, retry)

    async def _run(
        self,
        what: str,
        work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]],
        retry: bool,
    ) -> _T:
        try:
            return await self._once(what, work)
        except TransientBackendError:
            if not retry:
                raise
        return await self._once(what, work)

    async def _once(
        self, what: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[_T]]
    ) -> _T:
        with postgres_errors(what):
            async with (await self._ready()).connection() as conn:
                return await work(conn)


async def _answer(
    waiting: Sequence[tuple[tuple[str, str], asyncio.Future[_T]]],
    answers: Awaitable[Mapping[tuple[str, str], _T]],
) -> None:
    """Hand each call of a batch its answer by (run id, attempt), or the batch's failure."""
    try:
        found = await answers
    except Exception as exc:  # every caller sees the failure
        for _, future in waiting:
            if not future.done():
                future.set_exception(exc)
        return
    for key, future in waiting:
        if not future.done():
            future.set_result(found[key])


class _Commit(NamedTuple):
    run_id: str
    attempt: str
    outcome: bytes
    future: asyncio.Future[bytes]


class _Claim(NamedTuple):
    run_id: str
    attempt: str
    owner: str
    lease: float
    future: asyncio.Future[ports.AttemptClaim]


_TABLE_FIELDS = ("contexts", "statuses", "runs", "states", "outbox", "attempts", "records")


def _make_pool(
    dsn_or_pool: str | AsyncConnectionPool[Any], min_size: int, max_size: int, timeout: float
) -> AsyncConnectionPool[Any]:
    if not isinstance(dsn_or_pool, str):
        return dsn_or_pool
    return AsyncConnectionPool(
        dsn_or_pool,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        # Every statement here is one of a few fixed texts: prepare each at its first use
        # (psycopg's default waits for the fifth, planning the first four from scratch).
        kwargs={"autocommit": True, "prepare_threshold": 0},
    )


def _outbox(ids: Sequence[str], bodies: Sequence[bytes]) -> tuple[ports.Message, ...]:
    """The outbox in order, each message once (a message saved again keeps its first place)."""
    seen: set[str] = set()
    messages = []
    for message_id, body in zip(ids, bodies, strict=True):
        if message_id not in seen:
            seen.add(message_id)
            messages.append(ports.Message(id=message_id, body=bytes(body)))
    return tuple(messages)


def _json_triples(outcomes: Mapping[tuple[str, str], bytes]) -> str:
    """``[[run_id, attempt, base64 outcome], ...]`` as JSON text (one parameter)."""
    return json.dumps(
        [[run, attempt, base64.b64encode(raw).decode()] for (run, attempt), raw in outcomes.items()]
    )


def _json_pairs(pairs: Iterable[tuple[str, bytes]]) -> str:
    """``[[key, base64 bytes], ...]`` as JSON text (one parameter for a whole list)."""
    return json.dumps([[key, base64.b64encode(raw).decode()] for key, raw in pairs])


def split_context_writes(writes: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """Split context writes into the keys to set and the keys to delete (``ports.DELETE``)."""
    sets = {key: value for key, value in writes.items() if value != ports.DELETE}
    deletes = [key for key, value in writes.items() if value == ports.DELETE]
    return sets, deletes


def _record_params(record: ports.RunRecord) -> tuple[object, ...]:
    return (
        record.run_id,
        record.blueprint_id,
        record.blueprint_version,
        record.blueprint_digest,
        record.status,
        Jsonb(record.input),
        Jsonb(record.output),
        Jsonb([dict(e) for e in record.errors]),
        None if record.parent is None else Jsonb(list(record.parent)),
        record.idempotency_key,
        record.created_at or None,
    )


def _record(row: _Row) -> ports.RunRecord:
    parent = row[8]
    return ports.RunRecord(
        run_id=row[0],
        blueprint_id=row[1],
        blueprint_version=row[2],
        blueprint_digest=row[3],
        status=row[4],
        input=row[5],
        output=row[6],
        errors=tuple(row[7] or ()),
        parent=None if parent is None else (parent[0], parent[1], parent[2], int(parent[3])),
        idempotency_key=row[9],
        created_at=row[10],
        updated_at=row[11],
    )


def _encode_cursor(row: _Row) -> str:
    created: datetime = row[12]
    raw = json.dumps([created.isoformat(), row[0]]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), str(run_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid list_runs cursor {cursor!r}") from exc
