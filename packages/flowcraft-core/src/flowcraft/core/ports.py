"""The ports an adapter implements: a job queue, a run store and a coordination store.

Everything here is a narrow ``typing.Protocol``; each method's docstring states its guarantee
(atomic? idempotent? who calls it?). Adapters need no base class. The runtime (worker, client,
reconciler in ``flowcraft.core``) owns every sequence: claim -> run -> commit -> decide ->
enqueue -> ack, lease renewal, retry maths, delay chaining and dedup ids. An adapter only talks
to its server.

Time: stores keep wall-clock timestamps (seconds since the epoch, float) and compare leases
against their own clock. Bodies, headers and records are opaque bytes / JSON-ready values
produced by core's codecs; adapters store them as they are.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "DELETE",
    "AttemptClaim",
    "ClaimStatus",
    "CoordinationStore",
    "Delivery",
    "JobQueue",
    "Message",
    "QueueCapabilities",
    "ResultNotifier",
    "ResultReader",
    "RunNotifier",
    "RunPage",
    "RunRecord",
    "RunStarter",
    "RunStore",
    "RunWatch",
    "StoredResult",
    "StoredState",
    "records_from_document",
]

#: The value of a context write that deletes the key (JSON-encoded form in ``save_state``).
DELETE: Mapping[str, bool] = {"$flowcraft_delete": True}


# --------------------------------------------------------------------------- queue


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCapabilities:
    """What a queue can do; the runtime and the conformance suite read these.

    Attributes:
        native_delay: ``enqueue(delay=...)`` is delivered no earlier than the delay.
        max_delay: The longest delay one ``enqueue`` honours (seconds); longer delays are
            chained by the runtime. ``None``: unlimited.
        dead_letter: ``Delivery.dead_letter`` moves the message to a dead-letter queue.
        dedup: ``enqueue`` drops a message whose id was enqueued before (within the queue's
            dedup window). When False, duplicates are delivered and the runtime dedupes.
        sticky: ``enqueue(sticky=True)`` prefers this queue object's own consumer (see
            ``JobQueue.enqueue``). When False the hint is ignored.
    """

    native_delay: bool = True
    max_delay: float | None = None
    dead_letter: bool = True
    dedup: bool = False
    sticky: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message to enqueue: a deterministic ``id`` (the dedup id) and an opaque ``body``."""

    id: str
    body: bytes


@runtime_checkable
class Delivery(Protocol):
    """One delivery of a message to one consumer.

    A delivery is settled exactly once by ``ack``, ``nack`` or ``dead_letter``. Until then the
    message is invisible to other consumers for the queue's visibility timeout (extendable);
    a consumer that dies without settling makes the message visible again (at-least-once).
    """

    @property
    def message_id(self) -> str:
        """The message's id (its dedup id)."""
        ...

    @property
    def body(self) -> bytes:
        """The message body, as enqueued."""
        ...

    @property
    def delivery_count(self) -> int:
        """How many times this message has been delivered, this delivery included (>= 1)."""
        ...

    async def ack(self) -> None:
        """Remove the message for good. Called only after durable progress."""
        ...

    async def nack(self, delay: float = 0.0) -> None:
        """Give the message back, to be delivered again after ``delay`` seconds."""
        ...

    async def extend(self, seconds: float) -> None:
        """Keep the message invisible to others for ``seconds`` more (long-running nodes)."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the dead-letter queue with ``reason`` (poison messages)."""
        ...


class JobQueue(Protocol):
    """The job transport of one namespace.

    Delivery is at least once. ``enqueue`` is durable when it returns (publisher confirms or
    equivalent). Order is not guaranteed.
    """

    @property
    def capabilities(self) -> QueueCapabilities:
        """What this queue can do."""
        ...

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Durably enqueue ``message``, deliverable after ``delay`` seconds (<= max_delay).

        ``sticky`` is a hint (used by workers for the next steps of a run they just decided,
        whose state they hold in memory): deliver the message to this queue object's own
        consumer if it takes it soon; otherwise, after a bounded wait (a dead or busy
        consumer), to any consumer. A queue may ignore the hint (and one that honours it
        still delivers at least once); capability ``sticky`` says which.
        """
        ...

    async def receive(self, max_messages: int, wait: float) -> Sequence[Delivery]:
        """Up to ``max_messages`` deliveries, waiting up to ``wait`` seconds for the first."""
        ...

    async def stop_receiving(self) -> None:
        """Take no more messages for this consumer (a worker that starts to drain).

        Messages the queue object fetched ahead for its consumer (a prefetch buffer) but
        ``receive`` has not returned go back to the queue at once, for other consumers, and
        no more are fetched; deliveries already returned stay settleable (ack, nack, extend,
        dead-letter) until ``close``. The caller receives no more on this object. Idempotent.
        A queue that fetches nothing ahead has nothing to do.
        """
        ...

    async def close(self) -> None:
        """Release connections; unsettled deliveries become visible again."""
        ...


# --------------------------------------------------------------------------- run store


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """The durable record of one run (what ``status``, ``result`` and ``list_runs`` read).

    ``status`` is one of pending, running, awaiting, completed, failed, cancelled.
    ``parent`` is ``[run_id, node_id, frame, attempt]`` for a subflow's child run.
    """

    run_id: str
    blueprint_id: str
    blueprint_version: str
    blueprint_digest: str
    status: str = "pending"
    input: object = None
    output: object = None
    errors: tuple[Mapping[str, object], ...] = ()
    parent: tuple[str, str, str, int] | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredState:
    """A run's decision state as stored: header, records, context and outbox (one snapshot).

    ``version`` increases by one with every successful ``save_state`` (compare-and-set).
    ``header`` is the small JSON object every save rewrites; ``records`` maps record keys
    (strings) to JSON values: every record of the run, or (``since`` is not None) only those
    saved after version ``since`` plus the requested ``keys`` that exist (see ``load_state``).
    ``outbox`` holds messages a decision produced that may not have been enqueued yet.
    ``record`` is the run's record of the same snapshot, for stores that read it together
    (None: the caller reads it with ``get_run`` when it needs it).
    """

    version: int
    header: Mapping[str, object]
    records: Mapping[str, object]
    context: Mapping[str, object]
    outbox: tuple[Message, ...] = ()
    record: RunRecord | None = None
    since: int | None = None


class ClaimStatus(StrEnum):
    """The answer to ``claim_attempt``."""

    CLAIMED = "claimed"  # the caller holds the lease now
    BUSY = "busy"  # another owner holds a live lease
    DONE = "done"  # an outcome is committed already (see ``outcome``)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptClaim:
    """Result of ``claim_attempt``."""

    status: ClaimStatus
    lease_until: float = 0.0
    outcome: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPage:
    """One page of ``list_runs``; pass ``cursor`` back for the next (None: last page)."""

    runs: tuple[RunRecord, ...]
    cursor: str | None = None


class RunStore(Protocol):
    """Durable run state of one namespace.

    A run's decision state is a small **header** (rewritten by every save, under the
    compare-and-set) and **records**: JSON values under string keys, written only when a
    decision changed them, never deleted while the run exists. A save costs what the decision
    changed; a load costs the run's size (and only happens when a worker does not hold the
    state already, or catches up after a lost compare-and-set by loading what changed since).

    Stores with bounded transactions (DynamoDB: 100 items and 4 MB; Cosmos DB: 100 operations
    in one partition; Cassandra: one partition per conditional batch) keep ``save_state``
    atomic by packing: a save's records (one decision can start 10,000 nodes: about 20,000
    records of a few dozen bytes) are written as a few items holding many records each,
    before or in the transaction, and the header's compare-and-set is what makes them count
    (a reader only takes records of versions the header reached). The core keeps records small
    and a save's size proportional to its decision; packing is the store's.
    """

    async def create_run(
        self,
        record: RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> RunRecord:
        """Create the run with its initial state unless it exists.

        The state is version 1: ``header`` and ``records``, an empty context and outbox.
        Atomic and idempotent: if ``record.run_id`` exists, or ``record.idempotency_key`` names
        an existing run, nothing is written and the existing record is returned.
        """
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None."""
        ...

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """The run's state, context and outbox as of the last ``save_state`` (one snapshot).

        ``since=None``: every record and the outbox. ``since=v`` (catching up a state held at
        version ``v``): only the records written by saves after version ``v``, plus the
        current value of each of ``keys`` (records the caller changed but could not save) that
        exists (a requested key in neither does not exist), and no outbox (empty: it is the
        business of whoever saved it, or of a full load). Header, context and record are
        always whole. None if there is no such run.
        """
        ...

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
        """Compare-and-set the state: only if the stored version is ``expected_version``.

        Atomically: store ``header`` as version ``expected_version + 1``, write ``records``
        key by key (each noted as written by that version; records not named are untouched),
        apply ``context_writes`` key by key (``DELETE`` removes a key; other keys are
        untouched, never a whole-document rewrite), append ``outbox`` to the outbox, and
        update the record's status, output, errors and ``updated_at``. Returns False (and
        writes nothing of the state) when the version moved on.

        ``outcomes`` are ``(attempt, outcome)`` pairs whose decision this save carries (the
        one-round-trip path of a worker). In the same transaction each is committed as
        ``commit_attempt`` would (first writer wins), and the state is saved only if every one
        of them is the outcome that stands (none was committed before). The commits stand even
        when the save does not: a caller that gets False commits them with ``commit_attempt``
        (which returns the standing outcomes) and decides again.

        ``claims`` are ``(attempt, owner, lease seconds)`` of attempts this decision starts,
        leased to ``owner`` with the save (as ``claim_attempt`` would, so a worker can run them
        at once); written only if the save is, and never over an existing attempt.

        ``sent`` are ids of messages of this run's outbox that were enqueued: they leave the
        outbox with the save (as ``remove_outbox`` would; only if the save happens). A store
        may keep one whose siblings of the same earlier save were not all sent: removal is an
        optimisation, ``remove_outbox`` stays the way to be sure.
        """
        ...

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """Drop enqueued messages from outboxes: run id -> message ids. Idempotent.

        Unknown runs and ids are ignored. Batches many runs in one call (one round trip where
        the store allows it); callers may defer it, since a message left in an outbox is only
        sent again (job ids are deterministic and workers dedupe).
        """
        ...

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        """Take the lease on one node attempt (``attempt`` is its stable id).

        Atomic: CLAIMED if no outcome is committed and no other owner holds a live lease (an
        expired lease may be taken over; the same owner may re-claim); BUSY with the other
        lease's expiry; DONE with the committed outcome.
        """
        ...

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend ``owner``'s lease by ``lease`` seconds from now.

        Returns False if the owner lost the lease or the attempt is done.
        """
        ...

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """Record the attempt's outcome, first writer wins; return the outcome that stands.

        Atomic and idempotent: a second commit (duplicate or late worker) changes nothing and
        gets the first outcome back.
        """
        ...

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs, newest first, optionally of one status."""
        ...

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """Ids of non-terminal runs whose state was last saved before ``updated_before``."""
        ...


# ------------------------------------------------------------------ optional store capabilities


@runtime_checkable
class RunStarter(Protocol):
    """Optional, implemented by a run store: creates a run already started, in one step.

    ``Client.start`` uses it (found on the store by this protocol; capability
    ``started_runs``) to record a run and its first decision with one write instead of
    ``create_run`` followed by ``save_state``; without it the client takes those two steps.
    The decision (what the run's start does) is core's: the store only writes it.
    """

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
        """Create the run with its started state unless it exists; the record and if it did.

        As ``create_run(record, ...)`` followed by a ``save_state(expected_version=1, ...)``
        that stood, in one atomic step: the state is **version 2** with ``header`` and
        ``records`` (each noted as written by version 2), the context is ``context`` (JSON
        values, no deletions), the outbox holds ``outbox`` in order, and the record has
        ``status``, ``output`` and ``errors`` (``record.status`` is ignored). A terminal
        ``status`` notifies watches as a terminal ``save_state`` would.

        Idempotent: if ``record.run_id`` exists, or ``record.idempotency_key`` names an
        existing run, nothing is written and ``(existing record, False)`` is returned (a
        retried start whose first answer was lost finds its run; the caller then treats it
        like any run it may not have finished starting). Otherwise ``(new record, True)``.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResult:
    """What ``ResultReader.read_result`` reads: a run's header, context and named records.

    One snapshot, like ``StoredState``; ``records`` holds only the requested keys that exist.
    """

    version: int
    header: Mapping[str, object]
    records: Mapping[str, object]
    context: Mapping[str, object]


@runtime_checkable
class ResultReader(Protocol):
    """Optional, implemented by a run store: reads a run's result without its whole state.

    ``Client.result`` uses it (found on the store by this protocol; capability
    ``result_reads``) once a run may have ended: core names the few records a result is made
    of, and the store reads those, not every record and the outbox that ``load_state`` reads.
    Without it the client loads the whole state.
    """

    async def read_result(self, run_id: str, keys: Collection[str]) -> StoredResult | None:
        """The run's version, header and context, and those of ``keys`` that exist.

        One snapshot of the last ``save_state`` (as ``load_state`` reads it), in one round
        trip where the store allows it; records not in ``keys`` and the outbox are not read.
        None if there is no such run. Read-only.
        """
        ...


# --------------------------------------------------------------------------- notifications


class RunWatch(Protocol):
    """A subscription to one run's end (see :class:`RunNotifier`)."""

    async def wait(self, timeout: float) -> bool:
        """Wait for a notification; ``True`` when one came, ``False`` after ``timeout`` seconds.

        ``True`` means the run's record *may* have changed: the caller reads it to know.
        Notifications that came before ``wait`` was called are not lost: the next ``wait``
        returns ``True`` at once.
        """
        ...

    @property
    def notice(self) -> str | None:
        """The notice a notification of this run carried (see :class:`ResultNotifier`).

        None until one came (stores that are not ``ResultNotifier`` never carry one). Once
        set it stays: a notice describes a settled run, whose result no later save changes.
        """
        ...


@runtime_checkable
class RunNotifier(Protocol):
    """Optional, implemented by a run store: tells waiters when a run may have ended.

    ``Client.result()`` uses it (found on the store by this protocol) to wake when a run
    settles instead of polling its record. Guarantees:

    * Once ``watch(run_id)`` is entered, a ``save_state`` of that run with a terminal status
      that commits afterwards (from any process) notifies the watch, normally within
      milliseconds. Every such save notifies, not only the first: a terminal run whose last
      attempts are still finishing settles with a later save.
    * Best effort: a notification may be lost (the server connection broke, a process
      restarted). Callers poll the record now and then as a fallback, so a lost notification
      costs latency, never a result. Spurious notifications are allowed.
    * Subscribing costs no round trip per watch once the store listens (one connection or
      subscription per store, shared by every watch).
    """

    def watch(self, run_id: str) -> AbstractAsyncContextManager[RunWatch]:
        """Subscribe to ``run_id``'s end for the duration of the ``async with`` block."""
        ...


@runtime_checkable
class ResultNotifier(Protocol):
    """Optional, implemented by a ``RunNotifier`` store: its notifications carry the result.

    The coordinator finds it by this protocol (capability ``result_notices``) and passes a
    ``notice`` to the save of a run that settles: JSON text of the run's result as of that
    save (the version, header, context and the records of its result, as ``read_result``
    would read them), built and read by core; the store carries it as it is and never
    stores it. ``Client.result`` then builds the result from the notice without a read.
    Guarantees, besides ``RunNotifier``'s:

    * A notice travels with the notification of the save it was given to, and only if that
      save commits (a refused save notifies nothing); watches of the run see it as
      ``RunWatch.notice``.
    * A notice of more than ``notice_limit`` bytes (UTF-8) is not sent: the notification then
      carries the run id alone (the waiter reads the result). Callers may skip building one
      they know is larger.

    A proxy of such a store that hands ``notice_limit`` through (``__getattr__``) makes
    itself one too: its ``save_state`` must pass ``notice`` on (``**kwargs`` does).
    """

    #: The largest notice (UTF-8 bytes) the store's notifications carry.
    notice_limit: int

    def watch(self, run_id: str) -> AbstractAsyncContextManager[RunWatch]:
        """As ``RunNotifier.watch``; the watch's ``notice`` is what a notification carried."""
        ...

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
        """``RunStore.save_state``, and ``notice`` sent with a terminal save's notification."""
        ...


# --------------------------------------------------------------------------- coordination


class CoordinationStore(Protocol):
    """Small atomic primitives shared by workers. Keys are namespaced by the adapter.

    **Optional.** The runtime needs only the queue and the run store: every guarantee of a run
    (exactly-once commits, joins, leases, recovery) rests on those two. A backend that has a
    coordination store (Redis for three adapters, DynamoDB for SQS) declares the
    ``coordination`` capability and passes the suite's coordination tests. Workers use its
    fenced locks for the decide turns of contended runs (``run:{run_id}:decide``: workers
    completing branches of one wide fan-in take turns instead of racing on the run's
    compare-and-set); a lost or failing lock only costs speed. Planned: distributed per-node
    concurrency limits.

    The keys of a run are ``run:{run_id}`` and ``run:{run_id}:...``; ``expire_run`` applies to
    those. Every method is atomic; TTLs are seconds (None: no expiry).
    """

    async def set_add(self, key: str, member: str, *, ttl: float | None = None) -> bool:
        """Add ``member`` to the set ``key``; True if it was not there. Atomic."""
        ...

    async def compare_and_set(
        self, key: str, expected: str | None, value: str, *, ttl: float | None = None
    ) -> bool:
        """Set ``key`` to ``value`` only if it currently is ``expected`` (None: absent). Atomic."""
        ...

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""
        ...

    async def acquire_lock(self, name: str, *, ttl: float) -> int | None:
        """Take the lock ``name`` for ``ttl`` seconds.

        Returns a fencing token (strictly increasing per name), or None if someone holds it.
        """
        ...

    async def release_lock(self, name: str, token: int) -> bool:
        """Release the lock if ``token`` still holds it; False otherwise."""
        ...

    async def expire_run(self, run_id: str, *, ttl: float) -> None:
        """Let every key of ``run_id`` expire after ``ttl`` seconds (called when it ends)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def records_from_document(
    document: Mapping[str, object],
) -> tuple[dict[str, object], dict[str, object]]:
    """The ``(header, records)`` of a run state that an earlier build stored whole.

    For adapters that migrate stored states to the header-and-records layout (``ValueError``
    if ``document`` is not such a state).
    """
    from flowcraft.core._engine.records import records_from_document as convert  # noqa: PLC0415

    return convert(document)
