"""Blueprints on a World: flowcraft's backend ports over any World (backend ``world-memory``).

Flowcraft's distributed runtime (workers, client, reconciler) needs a job queue and a run
store. This module builds both from a :class:`~flowcraft.core.world.World`, so blueprints run
on any World and every run has a full, listable event history in the World's own terms:

=====================  ========================================================================
flowcraft              World
=====================  ========================================================================
a run                  a run (same id; ``workflow_name``: the blueprint id; ``deployment_id``:
                       ``flowcraft:{namespace}``); created by one ``run_created`` whose
                       ``execution_context`` holds the run record and the initial state
run status             ``run_started`` when it leaves pending (``awaiting`` is a running World
                       run), then ``run_completed`` / ``run_failed`` / ``run_cancelled``
a node instance that   a **step** (id ``node``, or ``node@frame`` in a loop, map or subflow
runs (task, subflow,   frame): ``step_created``; each attempt ``step_started``; a retried
map, loop)             attempt ``step_retrying`` (error, ``retry_after``); ``step_completed``
                       (output) or ``step_failed`` (error; ``cancelled`` for a cancelled attempt)
a wait (or a task      a **hook** whose token is the node's resume token: ``hook_created``, a
that suspends)         resume ``hook_received`` (the payload) + ``hook_disposed``
a sleep                a **wait**: ``wait_created`` (``resume_at``), ``wait_completed``
run history            ``world.events_list(run_id)``: dense, ordered, per run
the job queue          the World queue ``flowcraft.{namespace}.jobs``
=====================  ========================================================================

**The job queue** (:class:`WorldJobQueue`): the World pushes each message to a handler and
reads its answer (return: ack; ``Redeliver(delay)``: again later; raise: again after a
backoff). One handler per namespace parks deliveries until a worker's ``receive`` takes them
and settles them: ``ack`` returns, ``nack(delay)`` is ``Redeliver(delay)``. What the World
queue lacks is built on its primitives, none faked: the *visibility timeout* (a taken delivery
not settled in ``visibility`` seconds is answered ``Redeliver(0)`` and its late settlement is
ignored; ``extend`` pushes the deadline), *delivery counts* (the World's own per-message
attempt count), *dead letters* (a stream, ``flowcraft.dead-letters`` of the namespace, then an
ack). Delays are the World's (never early; its ``max_delay_seconds`` is the queue's
``max_delay``). No dedup (the World's dedup window would also drop the reconciler's
deliberate re-sends; workers dedupe by claiming attempts), no sticky hint.

**The run store** (:class:`WorldRunStore`). The World's only write path for runs, steps, hooks
and waits is ``events_create``, and its only conditional writes are its entity guards. That
is enough for the run's identity (``run_created`` with a client-supplied id is
first-writer-wins and idempotent) but not for flowcraft's decision state: a header and records
saved by compare-and-set, per-key context writes, an outbox, leased attempt claims and
first-writer-wins outcomes have no World entity. Forcing them into fake steps or hooks would
make the history lie, so the store keeps them in **the run's journal**, a run-scoped stream
(``flowcraft.journal``) used as a shared log: every write (save, claim, extend, commit, outbox
removal) appends one JSON chunk, and each chunk's effect is a deterministic function of the
chunks before it: a save applies only if the folded version is its expected version (the
compare-and-set; its carried outcomes are committed first and stand either way), the first
commit of an attempt in log order is its outcome, a claim or extension is judged at the time
the chunk carries. Streams are totally ordered and append-atomic, so every reader folds the
same state, and a writer learns whether its chunk took effect by folding up to it. Each store
caches its folds and reads only the chunks appended since: at most one stream read per
operation, and one for all the operations of a run that queued behind the same read.

Every save that takes effect is then **projected** into the World's event log
(``_bp_history``): the node records the save wrote are compared with the World's steps, hooks
and waits, and only the missing forward transitions are appended (never backwards), then the
run's status. The projection is state-based, so it is idempotent and order-insensitive: a
later save's projection fills in what an earlier one has not written yet (the World refuses a
duplicate create or a transition of a finished step, which the projector skips), and a save
whose projection failed is projected with the next one. Within one process projections of a
run are serialised; two processes projecting one run at the same instant could both append a
``step_started`` (the one World transition without a guard against a repeat).

**Idempotency keys** need a uniqueness the World offers only for run ids; a key is claimed in
the namespace's stream ``flowcraft.keys``: the first claim of a key in the stream wins and
carries the whole creation, so whoever reads a winning claim whose run was never created (its
creator died in between) creates it, with the same content. **Listing** (``list_runs``,
``stalled_runs``) reads the World's runs of the namespace (``runs_list``) and their folds: the
World has no index on flowcraft's status or save time. **Notifications**
(``ports.RunNotifier``): every read of a run's journal wakes the watches of the terminal saves
it folds in, and a watch reads the journal itself when no other read of its run came for a
while (up to a second), so a terminal save from any process wakes it.

Capabilities of ``world-memory``: ``dead_letter``, ``delayed_delivery``,
``run_notifications``; no coordination store (optional: every run guarantee rests on the
queue and the store). Limits: state lives in one process (``InMemoryWorld``); listing scans
the namespace's runs; a journal grows with every write of its run and is read once per store.

Example::

    from flowcraft.core.world import InMemoryWorld
    from flowcraft.core.world.blueprints import WorldBackendFactory

    factory = WorldBackendFactory(lambda namespace: InMemoryWorld())
    backend = await factory.create("orders")  # starts the World's consumers
    # Worker(queue=backend.queue, store=backend.store, ...); Client(...)
    history = await backend.extra["world"].events_list(run_id)

or ``flowcraft worker --backend world-memory`` / ``flowcraft conformance --backend
world-memory``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcraft.core.backends import Backend
from flowcraft.core.ports import JobQueue, Message
from flowcraft.core.world._bp_queue import DEAD_LETTERS, Dispatcher, WorldDelivery, WorldJobQueue
from flowcraft.core.world._bp_store import KEYS, WorldRunStore, namespace_run_id
from flowcraft.core.world._memory import InMemoryWorld
from flowcraft.core.world._models import QueueMessage, Redeliver
from flowcraft.core.world._protocol import World

__all__ = [
    "DEAD_LETTERS",
    "KEYS",
    "WorldBackendFactory",
    "WorldDelivery",
    "WorldJobQueue",
    "WorldMemoryBackendFactory",
    "WorldRunStore",
    "jobs_queue_name",
]


def jobs_queue_name(namespace: str) -> str:
    """The World queue of a namespace's jobs."""
    return f"flowcraft.{namespace}.jobs"


class WorldBackendFactory:
    """A ``BackendFactory`` over Worlds made by ``open_world(namespace)``.

    ``create`` opens the namespace's World, registers the job queue's handler and starts the
    World (its consumers); ``close`` closes it.

    Args:
        open_world: A new, not yet started World for a namespace.
        visibility: Seconds a taken job may stay unsettled before it is delivered again.
    """

    capabilities = frozenset({"dead_letter", "delayed_delivery", "run_notifications"})

    def __init__(self, open_world: Callable[[str], World], *, visibility: float = 3.0) -> None:
        self._open_world = open_world
        self.visibility = visibility

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace`` on its World."""
        world = self._open_world(namespace)
        dispatcher = Dispatcher(
            world,
            jobs_queue_name(namespace),
            namespace_run_id(namespace),
            visibility=self.visibility,
        )
        dispatcher.register()
        world.register_handler(_recovery_prefix(namespace), _acknowledge)
        await world.start()
        queue = WorldJobQueue(dispatcher)

        async def worker_queue() -> JobQueue:
            return WorldJobQueue(dispatcher)

        async def inject(message: Message) -> None:
            await queue.enqueue(message)

        return Backend(
            queue=queue,
            store=WorldRunStore(world, namespace),
            coordination=None,
            dead_letters=dispatcher.dead_letters,
            inject=inject,
            worker_queue=worker_queue,
            visibility_timeout=self.visibility,
            extra={"world": world, "namespace": namespace},
        )

    async def close(self, backend: Backend) -> None:
        """Close the queue and the World (an in-memory World's data goes with it)."""
        await backend.queue.close()
        world: Any = backend.extra["world"]
        await world.aclose()

    async def destroy(self, backend: Backend) -> None:
        """Close; nothing else to drop."""
        await self.close(backend)


class WorldMemoryBackendFactory(WorldBackendFactory):
    """Backend ``world-memory``: blueprints on an ``InMemoryWorld`` per namespace.

    Args:
        visibility: Seconds a taken job may stay unsettled (``--option visibility=3``).
    """

    def __init__(self, *, visibility: float | str = 3.0) -> None:
        super().__init__(_memory_world, visibility=float(visibility))


def _recovery_prefix(namespace: str) -> str:
    return f"flowcraft.{namespace}.recover."


async def _acknowledge(
    message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
) -> Redeliver | None:
    """Drop a World's recovery message: flowcraft's reconciler recovers runs (stalled_runs)."""
    del message, queue_name, message_id, attempt
    return None


def _memory_world(namespace: str) -> World:
    return InMemoryWorld(recovery_queue_prefix=_recovery_prefix(namespace))
