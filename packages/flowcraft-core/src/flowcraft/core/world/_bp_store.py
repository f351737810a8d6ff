"""``WorldRunStore``: the run store over any World (see ``flowcraft.core.world.blueprints``).

A flowcraft run is a World run (same id, ``workflow_name`` the blueprint id, ``deployment_id``
``flowcraft:{namespace}``), created by one ``run_created`` event that carries the run record
and the initial state (version 1) in its ``execution_context``. Everything the World has no
entity for lives in the run's journal stream (``_bp_journal``); every save that takes effect
is then projected into the run's event log (``_bp_history``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from flowcraft.core._distributed.watchers import RunWatchers
from flowcraft.core.errors import RunNotFoundError, TransientBackendError
from flowcraft.core.ports import AttemptClaim, Message, RunPage, RunRecord, RunWatch, StoredState
from flowcraft.core.world._bp_history import Known, payload, project
from flowcraft.core.world._bp_journal import (
    JOURNAL,
    Entry,
    Fold,
    apply,
    b64,
    creation,
    decode,
    encode,
    initial,
    is_creation,
    record_from_json,
)
from flowcraft.core.world._errors import WorldConflictError, WorldNotFoundError
from flowcraft.core.world._models import (
    EventType,
    NewEvent,
    Pagination,
    RunCreatedData,
    RunStatus,
    WorkflowRun,
)
from flowcraft.core.world._protocol import World

log = logging.getLogger("flowcraft.core.world.blueprints")

_TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: The namespace stream of idempotency-key claims (on the namespace's pseudo run id).
KEYS = "flowcraft.keys"
_PAGE = 1000
#: A watch reads the journal itself only when no other read of its run came in between,
#: after a pause doubling from the first to the last (seconds).
_WATCH_FIRST = 0.05
_WATCH_MAX = 1.0


def namespace_run_id(namespace: str) -> str:
    """The run id under which a namespace keeps its streams (keys, dead letters)."""
    return f"flowcraft-namespace:{namespace}"


class WorldRunStore:
    """A ``ports.RunStore`` (and ``ports.RunNotifier``) over a World.

    Args:
        world: The World (started or not: the store only writes events and streams).
        namespace: Keeps this namespace's runs apart from others on the same World.
        clock: Wall-clock seconds stamped on records and journal entries (leases).
    """

    def __init__(
        self, world: World, namespace: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.world = world
        self.deployment_id = f"flowcraft:{namespace}"
        self._namespace_run = namespace_run_id(namespace)
        self._clock = clock
        self._folds: dict[str, Fold] = {}
        self._cursors: dict[str, str | None] = {}
        self._reads_begun: dict[str, int] = {}
        self._reads_done: dict[str, int] = {}
        self._read_signals: dict[str, asyncio.Event] = {}
        self._known: dict[str, Known] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._projecting: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, object] = {}
        self._keys: dict[str, dict[str, Any]] = {}
        self._keys_cursor: str | None = None
        self._watchers = RunWatchers()

    # ------------------------------------------------------------------ folding

    def _lock(self, run_id: str) -> asyncio.Lock:
        return self._locks.setdefault(run_id, asyncio.Lock())

    async def _fold(self, run_id: str) -> Fold | None:
        """The run's fold caught up with its journal as of this call (None: no such run of ours).

        Reads of a run queue on its lock; a caller whose wait saw another read *begin and
        end* after it arrived takes that read's fold instead of reading again (that read
        saw every entry appended before this call: the answer is as fresh, and one read
        serves every caller queued behind it).
        """
        ticket = self._reads_begun.get(run_id, 0)
        async with self._lock(run_id):
            fold = self._folds.get(run_id)
            if fold is None:
                fold = await self._load(run_id)
                if fold is None:
                    return None
            if self._reads_done.get(run_id, 0) <= ticket:
                await self._catch_up(run_id, fold)
            return fold

    async def _load(self, run_id: str) -> Fold | None:
        try:
            run = await self.world.runs_get(run_id, resolve_data="none")
        except WorldNotFoundError:
            return None
        if not self._ours(run):
            return None
        assert run.execution_context is not None
        fold = self._folds[run_id] = initial(run.execution_context)
        self._cursors[run_id] = None
        return fold

    def _ours(self, run: WorkflowRun) -> bool:
        return run.deployment_id == self.deployment_id and is_creation(run.execution_context)

    async def _catch_up(self, run_id: str, fold: Fold) -> None:
        """Fold in every journal entry appended since (the caller holds the run's lock).

        Counted: ``_reads_begun`` when it starts, ``_reads_done`` when it has read to the
        end (so, reads being one at a time per run, more reads done than had begun when a
        caller arrived means one began after it and saw everything it must see).
        """
        self._reads_begun[run_id] = self._reads_begun.get(run_id, 0) + 1
        await self._read_journal(run_id, fold)
        self._reads_done[run_id] = self._reads_done.get(run_id, 0) + 1
        signal = self._read_signals.pop(run_id, None)
        if signal is not None:
            signal.set()

    async def _read_journal(self, run_id: str, fold: Fold) -> None:
        while True:
            page = await self.world.streams_get_chunks(
                run_id, JOURNAL, limit=_PAGE, cursor=self._cursors.get(run_id)
            )
            for chunk in page.data:
                entry = decode(chunk.data)
                result = apply(fold, entry)
                if entry["id"] in self._waiting:
                    self._waiting[entry["id"]] = result
                if entry["op"] == "save" and entry["status"] in _TERMINAL and result is True:
                    self._watchers.notify(run_id)
            self._cursors[run_id] = page.cursor
            if not page.has_more:
                return

    async def _write(self, run_id: str, entry: Entry) -> object:
        """Append ``entry`` to the run's journal; what it did, once folded (see ``_bp_journal``).

        Raises:
            RunNotFoundError: No such run.
        """
        if run_id not in self._folds and await self._fold(run_id) is None:
            raise RunNotFoundError(run_id, f"run {run_id!r} not found")
        entry_id = uuid.uuid4().hex
        entry.update(id=entry_id, at=self._clock())
        pending = object()
        self._waiting[entry_id] = pending
        try:
            await self.world.streams_write(run_id, JOURNAL, encode(entry))
            for _ in range(50):  # a World's stream reads may lag its writes for a moment
                await self._fold(run_id)
                if self._waiting[entry_id] is not pending:
                    return self._waiting[entry_id]
                await asyncio.sleep(0.01)
        finally:
            result = self._waiting.pop(entry_id)
        if result is pending:
            raise TransientBackendError(f"journal entry of run {run_id!r} not readable back")
        return result

    async def _project(self, run_id: str) -> None:
        """Write what the fold changed into the run's World history (never raises)."""
        fold = self._folds.get(run_id)
        if fold is None:
            return
        async with self._projecting.setdefault(run_id, asyncio.Lock()):
            keys, fold.changed = fold.changed, set()
            try:
                known = self._known.setdefault(run_id, Known())
                await project(self.world, run_id, fold, keys, known)
                if fold.record.status in _TERMINAL:
                    known.steps.clear()  # its steps are projected: nothing left to plan
            except Exception:  # the save stands; its history is written by the next projection
                fold.changed |= keys
                log.warning("history of run %s not written yet", run_id, exc_info=True)

    # ------------------------------------------------------------------ creation

    async def create_run(
        self,
        record: RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> RunRecord:
        """Create unless the id or the idempotency key exists (one ``run_created`` event)."""
        now = self._clock()
        stamped = replace(record, created_at=record.created_at or now, updated_at=now)
        context = json.loads(json.dumps(creation(stamped, header, records or {})))
        if record.idempotency_key is not None:
            context = await self._claim_key(record.idempotency_key, context)
        created = record_from_json(context["record"])
        data = RunCreatedData(
            workflow_name=created.blueprint_id,
            deployment_id=self.deployment_id,
            input=payload(created.input),
            execution_context=context,
        )
        with contextlib.suppress(WorldConflictError):  # exists (with other content)
            event = NewEvent(event_type=EventType.RUN_CREATED, data=data)
            await self.world.events_create(created.run_id, event)
        fold = await self._fold(created.run_id)
        if fold is None:
            raise WorldConflictError(
                f"run {created.run_id!r} exists on the World but is not a flowcraft run of "
                f"{self.deployment_id!r}",
                code="run_exists",
            )
        await self._project(created.run_id)
        return fold.record

    async def _claim_key(self, key: str, context: dict[str, Any]) -> dict[str, Any]:
        """The creation the key belongs to: the first claim of it in the namespace's stream.

        A claim carries the whole creation, so whoever reads a winning claim whose run was
        never created (its creator died) creates that run, with the same content.
        """
        if key not in self._keys:
            claim = {"key": key, "context": context}
            await self.world.streams_write(self._namespace_run, KEYS, encode(claim))
        async with self._lock(self._namespace_run):
            for _ in range(50):  # a World's stream reads may lag its writes for a moment
                if key in self._keys:
                    return self._keys[key]
                page = await self.world.streams_get_chunks(
                    self._namespace_run, KEYS, limit=_PAGE, cursor=self._keys_cursor
                )
                for chunk in page.data:
                    entry = decode(chunk.data)
                    self._keys.setdefault(entry["key"], entry["context"])
                self._keys_cursor = page.cursor
                if not page.data:
                    await asyncio.sleep(0.01)
        if key in self._keys:
            return self._keys[key]
        raise TransientBackendError(f"the claim of idempotency key {key!r} not readable back")

    # ------------------------------------------------------------------ reads

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The record, or None."""
        fold = await self._fold(run_id)
        return None if fold is None else fold.record

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """Header, records (all, or since a version plus ``keys``), context and outbox."""
        fold = await self._fold(run_id)
        if fold is None:
            return None
        if since is None:
            records = {key: value for key, (_, value) in fold.records.items()}
        else:
            wanted = set(keys)
            records = {
                key: value
                for key, (at, value) in fold.records.items()
                if at > since or key in wanted
            }
        return StoredState(
            version=fold.version,
            header=fold.header,
            records=records,
            since=since,
            context=dict(fold.context),
            outbox=tuple(fold.outbox.values()) if since is None else (),
            record=fold.record,
        )

    # ------------------------------------------------------------------ writes

    async def save_state(
        self,
        run_id: str,
        *,
        expected_version: int,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[Message],
        status: str,
        output: object = None,
        errors: Sequence[Mapping[str, object]] = (),
        outcomes: Sequence[tuple[str, bytes]] = (),
        claims: Sequence[tuple[str, str, float]] = (),
        sent: Sequence[str] = (),
    ) -> bool:
        """Compare-and-set through the journal; a save that takes effect is projected."""
        entry: Entry = {
            "op": "save",
            "expected": expected_version,
            "header": dict(header),
            "records": dict(records),
            "context": dict(context_writes),
            "outbox": [[m.id, b64(m.body)] for m in outbox],
            "sent": list(sent),
            "status": status,
            "output": output,
            "errors": [dict(e) for e in errors],
            "outcomes": [[a, b64(o)] for a, o in outcomes],
            "claims": [[a, owner, lease] for a, owner, lease in claims],
        }
        try:
            saved = await self._write(run_id, entry) is True
        except RunNotFoundError:
            return False
        if saved:
            await self._project(run_id)
            if status in _TERMINAL:
                self._watchers.notify(run_id)
        return saved

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages (a journal entry per run that still holds any of them)."""
        for run_id, message_ids in sent.items():
            fold = await self._fold(run_id)
            held = [m for m in message_ids if fold is not None and m in fold.outbox]
            if held:
                await self._write(run_id, {"op": "remove", "ids": held})

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        """Take the attempt's lease (decided by the journal's order and the entry's time)."""
        entry = {"op": "claim", "attempt": attempt, "owner": owner, "lease": lease}
        result = await self._write(run_id, entry)
        assert isinstance(result, AttemptClaim)
        return result

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease."""
        entry = {"op": "extend", "attempt": attempt, "owner": owner, "lease": lease}
        try:
            return await self._write(run_id, entry) is True
        except RunNotFoundError:
            return False

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer (in journal order) wins."""
        result = await self._write(
            run_id, {"op": "commit", "attempt": attempt, "outcome": b64(outcome)}
        )
        assert isinstance(result, bytes)
        return result

    # ------------------------------------------------------------------ listing

    async def _runs(self, status: RunStatus | None = None) -> list[RunRecord]:
        """The records of this namespace's World runs (of one World status)."""
        found: list[RunRecord] = []
        cursor: str | None = None
        while True:
            page = await self.world.runs_list(
                status=status,
                pagination=Pagination(limit=_PAGE, cursor=cursor),
                resolve_data="none",
            )
            for run in page.data:
                if self._ours(run) and (fold := await self._fold(run.run_id)) is not None:
                    found.append(fold.record)
            cursor = page.cursor
            if not page.has_more:
                return found

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Newest first (by ``created_at``, then id); the cursor is the last run's position."""
        after = None if cursor is None else _decode_cursor(cursor)
        records = sorted(await self._runs(), key=_position, reverse=True)
        chosen = [
            r
            for r in records
            if (status is None or r.status == status) and (after is None or _position(r) < after)
        ]
        page = tuple(chosen[:limit])
        more = len(chosen) > limit
        return RunPage(runs=page, cursor=_encode_cursor(_position(page[-1])) if more else None)

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Non-terminal runs not saved since ``updated_before``."""
        live = [*await self._runs(RunStatus.PENDING), *await self._runs(RunStatus.RUNNING)]
        stale = [r for r in live if r.status not in _TERMINAL and r.updated_at < updated_before]
        stale.sort(key=lambda r: r.updated_at)
        return [r.run_id for r in stale[:limit]]

    # ------------------------------------------------------------------ notifications

    @asynccontextmanager
    async def watch(self, run_id: str) -> AsyncIterator[RunWatch]:
        """Subscribe to ``run_id``'s end (``ports.RunNotifier``): follow its journal.

        Any process's terminal save appends to the journal, and every read of the journal
        by this store notifies the terminal saves it folds in. This store's own saves
        notify at once; for other processes' saves the watch reads the journal itself
        when no other read of the run came in a pause (``_WATCH_FIRST`` doubling to
        ``_WATCH_MAX`` seconds, so a busy run costs the watch no read at all).
        """
        async with self._watchers.watch(run_id) as watch:
            follow = asyncio.ensure_future(self._follow(run_id))
            try:
                yield watch
            finally:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow

    async def _follow(self, run_id: str) -> None:
        pause = _WATCH_FIRST
        while True:
            seen = self._reads_done.get(run_id, 0)
            signal = self._read_signals.setdefault(run_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(pause):
                    await signal.wait()
            pause = min(_WATCH_MAX, pause * 2)
            if self._reads_done.get(run_id, 0) != seen:
                continue  # someone read the journal meanwhile (and notified what it folded)
            try:
                await self._fold(run_id)
            except Exception:  # the watch outlives a failed read: the next pause reads again
                log.debug("journal of run %s not readable now", run_id, exc_info=True)


def _position(record: RunRecord) -> tuple[float, str]:
    return (record.created_at, record.run_id)


def _encode_cursor(position: tuple[float, str]) -> str:
    raw = json.dumps(["fc-world", position[0], position[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        tag, created_at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if tag != "fc-world":
            raise ValueError(tag)
        return (float(created_at), str(run_id))
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"not a cursor of this store: {cursor!r}") from None
