"""The in-memory backend: the three ports on asyncio and dicts, with the same guarantees.

* :class:`MemoryJobQueue`: delayed delivery, a visibility timeout (an unsettled delivery comes
  back after it, with its delivery count raised: a crashed worker loses nothing), ``extend``,
  ``nack(delay)``, a dead-letter list, optional dedup by message id.
* :class:`MemoryRunStore`: compare-and-set state saves with per-key context writes, an outbox,
  leased attempt claims and first-writer-wins commits; every method is atomic (one lock).
* :class:`MemoryCoordinationStore`: set-add, compare-and-set, fenced locks, run TTLs.

Everything lives in one process (several workers share the objects). It is the reference the
conformance suite runs first, and what tests use for speed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace

from flowcraft.core._distributed.watchers import (
    RunWatchers,
    notification_payload,
    read_notification_payload,
)
from flowcraft.core.aio import wait_event
from flowcraft.core.ports import (
    DELETE,
    AttemptClaim,
    ClaimStatus,
    Message,
    QueueCapabilities,
    RunPage,
    RunRecord,
    RunWatch,
    StoredResult,
    StoredState,
)

_TERMINAL = frozenset({"completed", "failed", "cancelled"})


def _json(value: Mapping[str, object]) -> dict[str, object]:
    """A JSON round trip: what a real store would give back."""
    loaded: dict[str, object] = json.loads(json.dumps(value))
    return loaded


# --------------------------------------------------------------------------- queue


@dataclass(slots=True)
class _Entry:
    message: Message
    count: int = 0
    token: int = 0  # which delivery currently owns it (stale settlements are ignored)


class MemoryDelivery:
    """One delivery from a :class:`MemoryJobQueue`."""

    def __init__(self, queue: MemoryJobQueue, entry: _Entry) -> None:
        self._queue = queue
        self._entry = entry
        self._token = entry.token
        self.delivery_count = entry.count

    @property
    def message_id(self) -> str:
        """The message id."""
        return self._entry.message.id

    @property
    def body(self) -> bytes:
        """The body."""
        return self._entry.message.body

    def _owned(self) -> bool:
        return (
            self._entry.token == self._token
            and self._queue._inflight.get(self.message_id) is self._entry
        )

    async def ack(self) -> None:
        """Remove the message."""
        if self._owned():
            self._queue._settle(self._entry)

    async def nack(self, delay: float = 0.0) -> None:
        """Deliver again after ``delay``."""
        if self._owned():
            self._queue._settle(self._entry)
            self._queue._schedule(self._entry, delay)

    async def extend(self, seconds: float) -> None:
        """Stay invisible ``seconds`` more."""
        if self._owned():
            self._queue._arm(self._entry, seconds)

    async def dead_letter(self, reason: str) -> None:
        """Move to the dead-letter list."""
        if self._owned():
            self._queue._settle(self._entry)
            self._queue.dead_letters.append((self._entry.message, reason))


class MemoryJobQueue:
    """An in-process job queue with the semantics of a real one (see the module docstring)."""

    def __init__(
        self,
        *,
        visibility: float = 30.0,
        dedup: bool = False,
        max_delay: float | None = None,
        sticky: bool = False,
    ) -> None:
        self.visibility = visibility
        self._caps = QueueCapabilities(
            native_delay=True, max_delay=max_delay, dead_letter=True, dedup=dedup, sticky=sticky
        )
        self._ready: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._inflight: dict[str, _Entry] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._seen: set[str] = set()
        self._wakeup: asyncio.Event | None = None
        self.dead_letters: list[tuple[Message, str]] = []
        self.enqueued = 0

    @property
    def capabilities(self) -> QueueCapabilities:
        """What this queue can do."""
        return self._caps

    def _event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Enqueue (dropping a repeated id when dedup is on).

        ``sticky`` changes nothing: every consumer of this queue object is "its own" consumer.
        Declaring the capability (``sticky=True``) lets workers run attempts ahead.
        """
        del sticky
        if self._caps.dedup:
            if message.id in self._seen:
                return
            self._seen.add(message.id)
        self.enqueued += 1
        self._schedule(_Entry(message), delay)

    def _schedule(self, entry: _Entry, delay: float) -> None:
        heapq.heappush(self._ready, (time.monotonic() + max(0.0, delay), next(self._seq), entry))
        self._event().set()

    async def receive(self, max_messages: int, wait: float) -> Sequence[MemoryDelivery]:
        """Up to ``max_messages`` due messages, waiting up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            due = self._take(max_messages)
            if due or time.monotonic() >= deadline:
                return due
            self._event().clear()
            next_due = self._ready[0][0] if self._ready else deadline
            timeout = max(0.0, min(deadline, next_due) - time.monotonic())
            await wait_event(self._event(), timeout)

    def _take(self, limit: int) -> list[MemoryDelivery]:
        now = time.monotonic()
        taken: list[MemoryDelivery] = []
        while self._ready and self._ready[0][0] <= now and len(taken) < limit:
            _at, _seq, entry = heapq.heappop(self._ready)
            entry.count += 1
            entry.token = next(self._tokens)
            self._inflight[entry.message.id] = entry
            self._arm(entry, self.visibility)
            taken.append(MemoryDelivery(self, entry))
        return taken

    def _arm(self, entry: _Entry, seconds: float) -> None:
        old = self._timers.pop(entry.message.id, None)
        if old is not None:
            old.cancel()
        token = entry.token
        self._timers[entry.message.id] = asyncio.get_running_loop().call_later(
            seconds, self._expire, entry, token
        )

    def _expire(self, entry: _Entry, token: int) -> None:
        if entry.token == token and self._inflight.get(entry.message.id) is entry:
            self._settle(entry)
            self._schedule(entry, 0.0)  # visible again: the consumer vanished

    def _settle(self, entry: _Entry) -> None:
        entry.token = next(self._tokens)
        if self._inflight.get(entry.message.id) is entry:
            del self._inflight[entry.message.id]
        timer = self._timers.pop(entry.message.id, None)
        if timer is not None:
            timer.cancel()

    @property
    def depth(self) -> int:
        """Messages waiting or in flight."""
        return len(self._ready) + len(self._inflight)

    async def stop_receiving(self) -> None:
        """Nothing to give back: messages are taken only when ``receive`` returns them."""

    async def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- run store


@dataclass(slots=True)
class _Run:
    record: RunRecord
    version: int
    header: Mapping[str, object]
    #: key -> (version that wrote it, value)
    records: dict[str, tuple[int, object]] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)
    outbox: dict[str, Message] = field(default_factory=dict)


@dataclass(slots=True)
class _Attempt:
    owner: str
    lease_until: float
    outcome: bytes | None = None


class MemoryRunStore:
    """Run state in dicts, every method atomic under one lock.

    Also a ``ports.RunNotifier`` (a save with a terminal status wakes the run's watches) and
    ``ports.ResultNotifier`` (with the notice it was given), a ``ports.RunStarter`` and a
    ``ports.ResultReader``.
    """

    #: The largest notice a notification carries (``ports.ResultNotifier``), as PostgreSQL's.
    notice_limit = 7900

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._runs: dict[str, _Run] = {}
        self._keys: dict[str, str] = {}
        self._attempts: dict[tuple[str, str], _Attempt] = {}
        self._watchers = RunWatchers()

    def watch(self, run_id: str) -> AbstractAsyncContextManager[RunWatch]:
        """Subscribe to the end of ``run_id`` (``ports.RunNotifier``)."""
        return self._watchers.watch(run_id)

    async def create_run(
        self,
        record: RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> RunRecord:
        """Create unless the id or idempotency key exists."""
        async with self._lock:
            existing = self._existing(record)
            if existing is not None:
                return existing
            key = record.idempotency_key
            now = time.time()
            stamped = replace(record, created_at=record.created_at or now, updated_at=now)
            self._runs[record.run_id] = _Run(
                record=stamped,
                version=1,
                header=_json(header),
                records={k: (1, v) for k, v in _json(records or {}).items()},
            )
            if key is not None:
                self._keys[key] = record.run_id
            return stamped

    async def create_started_run(
        self,
        record: RunRecord,
        *,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context: Mapping[str, object],
        outbox: Sequence[Message],
        status: str,
        output: object = None,
        errors: Sequence[Mapping[str, object]] = (),
    ) -> tuple[RunRecord, bool]:
        """Create the run at version 2 with its first decision, unless the id or key exists."""
        async with self._lock:
            existing = self._existing(record)
            if existing is not None:
                return existing, False
            now = time.time()
            stamped = replace(
                record,
                status=status,
                output=output,
                errors=tuple(errors),
                created_at=record.created_at or now,
                updated_at=now,
            )
            self._runs[record.run_id] = _Run(
                record=stamped,
                version=2,
                header=_json(header),
                records={k: (2, v) for k, v in _json(records).items()},
                context=_json(context),
                outbox={m.id: m for m in outbox},
            )
            if record.idempotency_key is not None:
                self._keys[record.idempotency_key] = record.run_id
        if status in _TERMINAL:
            self._watchers.notify(record.run_id)
        return stamped, True

    def _existing(self, record: RunRecord) -> RunRecord | None:
        """The record of the run ``record`` names by id or idempotency key, if there is one."""
        if record.run_id in self._runs:
            return self._runs[record.run_id].record
        key = record.idempotency_key
        if key is not None and key in self._keys:
            return self._runs[self._keys[key]].record
        return None

    async def read_result(self, run_id: str, keys: Collection[str]) -> StoredResult | None:
        """Version, header, context and the records among ``keys`` (``ports.ResultReader``)."""
        async with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            return StoredResult(
                version=run.version,
                header=run.header,
                records={k: run.records[k][1] for k in keys if k in run.records},
                context=dict(run.context),
            )

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The record, or None."""
        run = self._runs.get(run_id)
        return None if run is None else run.record

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """Header, records (all, or since a version plus ``keys``), context and outbox."""
        async with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            if since is None:
                records = {k: v for k, (_, v) in run.records.items()}
            else:
                wanted = set(keys)
                records = {k: v for k, (at, v) in run.records.items() if at > since or k in wanted}
            return StoredState(
                version=run.version,
                header=run.header,
                records=records,
                since=since,
                context=dict(run.context),
                outbox=tuple(run.outbox.values()) if since is None else (),
                record=run.record,
            )

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
        notice: str | None = None,
    ) -> bool:
        """Compare-and-set, atomically with context writes, outbox, record, outcomes, claims.

        A terminal save wakes the run's watches, handing them ``notice`` when it is within
        ``notice_limit`` (``ports.ResultNotifier``).
        """
        async with self._lock:
            standing = [self._commit(run_id, a, o) == o for a, o in outcomes]
            run = self._runs.get(run_id)
            if run is None or run.version != expected_version or not all(standing):
                return False
            run.version += 1
            run.header = _json(header)  # stored as JSON, like every real store
            for key, value in _json(records).items():
                run.records[key] = (run.version, value)
            now = time.time()
            for attempt, owner, lease in claims:
                self._attempts.setdefault((run_id, attempt), _Attempt(owner, now + lease))
            for key, value in _json(context_writes).items():
                if value == DELETE:
                    run.context.pop(key, None)
                else:
                    run.context[key] = value
            for message_id in sent:
                run.outbox.pop(message_id, None)
            for message in outbox:
                run.outbox[message.id] = message
            run.record = replace(
                run.record,
                status=status,
                output=output,
                errors=tuple(errors),
                updated_at=time.time(),
            )
        if status in _TERMINAL:
            payload = notification_payload(run_id, notice, notice_limit=self.notice_limit)
            self._watchers.notify(*read_notification_payload(payload))  # as a channel would
        return True

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop sent messages."""
        async with self._lock:
            for run_id, message_ids in sent.items():
                run = self._runs.get(run_id)
                for message_id in message_ids if run is not None else ():
                    run.outbox.pop(message_id, None)  # type: ignore[union-attr]

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        """Take the attempt's lease (see the port)."""
        async with self._lock:
            now = time.time()
            current = self._attempts.get((run_id, attempt))
            if current is not None and current.outcome is not None:
                return AttemptClaim(status=ClaimStatus.DONE, outcome=current.outcome)
            if current is not None and current.owner != owner and current.lease_until > now:
                return AttemptClaim(status=ClaimStatus.BUSY, lease_until=current.lease_until)
            self._attempts[(run_id, attempt)] = _Attempt(owner=owner, lease_until=now + lease)
            return AttemptClaim(status=ClaimStatus.CLAIMED, lease_until=now + lease)

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease."""
        async with self._lock:
            current = self._attempts.get((run_id, attempt))
            if current is None or current.owner != owner or current.outcome is not None:
                return False
            current.lease_until = time.time() + lease
            return True

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer wins."""
        async with self._lock:
            return self._commit(run_id, attempt, outcome)

    def _commit(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        current = self._attempts.setdefault((run_id, attempt), _Attempt(owner="", lease_until=0))
        if current.outcome is None:
            current.outcome = outcome
        return current.outcome

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Newest first; the cursor is an offset."""
        records = sorted(
            (r.record for r in self._runs.values()),
            key=lambda r: (r.created_at, r.run_id),
            reverse=True,
        )
        if status is not None:
            records = [r for r in records if r.status == status]
        try:
            start = int(cursor or 0)
        except ValueError:
            raise ValueError(f"not a cursor of this store: {cursor!r}") from None
        page = tuple(records[start : start + limit])
        more = start + limit < len(records)
        return RunPage(runs=page, cursor=str(start + limit) if more else None)

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Non-terminal runs not saved since ``updated_before``."""
        stale = [
            r.record
            for r in self._runs.values()
            if r.record.status not in _TERMINAL and r.record.updated_at < updated_before
        ]
        stale.sort(key=lambda r: r.updated_at)
        return [r.run_id for r in stale[:limit]]


# --------------------------------------------------------------------------- coordination


class MemoryCoordinationStore:
    """Coordination primitives in dicts (TTLs checked on read)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[object, float | None]] = {}
        self._tokens: dict[str, int] = {}

    def _live(self, key: str) -> object | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and expires <= time.time():
            del self._values[key]
            return None
        return value

    @staticmethod
    def _expiry(ttl: float | None) -> float | None:
        return None if ttl is None else time.time() + ttl

    async def set_add(self, key: str, member: str, *, ttl: float | None = None) -> bool:
        """Add to a set."""
        members = self._live(key)
        current = members if isinstance(members, set) else set()
        added = member not in current
        current.add(member)
        self._values[key] = (current, self._expiry(ttl))
        return added

    async def compare_and_set(
        self, key: str, expected: str | None, value: str, *, ttl: float | None = None
    ) -> bool:
        """Set if it currently is ``expected``."""
        if self._live(key) != expected:
            return False
        self._values[key] = (value, self._expiry(ttl))
        return True

    async def get(self, key: str) -> str | None:
        """A string value."""
        value = self._live(key)
        return value if isinstance(value, str) else None

    async def acquire_lock(self, name: str, *, ttl: float) -> int | None:
        """A fencing token, or None when held."""
        if self._live(f"lock:{name}") is not None:
            return None
        token = self._tokens.get(name, 0) + 1
        self._tokens[name] = token
        self._values[f"lock:{name}"] = (token, self._expiry(ttl))
        return token

    async def release_lock(self, name: str, token: int) -> bool:
        """Release if ``token`` holds it."""
        if self._live(f"lock:{name}") != token:
            return False
        del self._values[f"lock:{name}"]
        return True

    async def expire_run(self, run_id: str, *, ttl: float) -> None:
        """Expire the run's keys: ``run:{run_id}`` and ``run:{run_id}:...``."""
        mine = f"run:{run_id}"
        for key, (value, _old) in list(self._values.items()):
            if key == mine or key.startswith(f"{mine}:"):
                self._values[key] = (value, self._expiry(ttl))

    async def close(self) -> None:
        """Nothing to release."""
