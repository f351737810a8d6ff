"""Sending a run's messages and dropping them from its outbox afterwards.

The coordinator saves a decision's messages in the run's outbox together with the decision,
then hands them to a :class:`Sender`, which enqueues each at its job's ``not_before`` (clipped
to the queue's longest delay: workers chain the rest) and with the ``sticky`` hint for a node
attempt due now, where that is asked for and the queue offers it.

Removing sent messages from the outbox may be deferred and batched across runs (``defer``): a
message still in an outbox is at worst sent again (job ids are deterministic, workers dedupe).
The next save of the run also removes the ones sent by then (:meth:`Sender.removable` before
the save, :meth:`Sender.removed` after it), so a run in progress needs no removal statement of
its own.

Messages of attempts run ahead (leased by the save, in no outbox) are *held*: sent only if
their attempt is still unsettled ``copy_after`` seconds after the save (:meth:`Sender.settled`
drops them once a save commits its outcome), or at once when the sender closes. An attempt
that is done by then never costs its queue a send, a delivery and an ack; the message is a
copy for an attempt whose run here fails, outlives the delay, or is cut short by a stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from flowcraft.core._distributed import jobs as j
from flowcraft.core.aio import wait_event
from flowcraft.core.ports import JobQueue, Message, RunStore

_log = logging.getLogger("flowcraft.coordinator")
#: Deferred outbox removals are flushed at once past this many messages.
_FLUSH_AT = 512
#: Backoff (seconds) while sending messages owed for attempts run ahead (``Sender.later``).
OWED_FIRST_WAIT = 0.25
OWED_MAX_WAIT = 10.0
#: Seconds the message of an attempt run ahead is held back by default (see the module
#: docstring): a node done by then never needs it.
COPY_AFTER = 0.5

Spawn = Callable[[Coroutine[object, object, None]], "asyncio.Task[None]"]
#: A save's held messages: when the hold ends (loop time), the run, the messages, their jobs.
_Hold = tuple[float, str, Sequence[Message], Mapping[str, j.Job]]


class Sender:
    """Enqueues messages of runs and keeps track of their removal from the outboxes.

    Args:
        store, queue: The run store (outboxes) and the job queue.
        clock: Wall clock (delays until ``not_before``).
        defer: Seconds to collect sent messages before removing them in one batch; None
            removes them right after sending. Deferring needs :meth:`flush` at the end.
        sticky: Send node attempts due now with the queue's ``sticky`` hint.
        spawn: Runs a coroutine in a task its owner waits for when it closes.
        copy_after: Seconds the messages of attempts run ahead are held back (see the
            module docstring; 0 sends them right after the save).
    """

    def __init__(
        self,
        *,
        store: RunStore,
        queue: JobQueue,
        clock: Callable[[], float],
        defer: float | None,
        sticky: bool,
        spawn: Spawn,
        copy_after: float = COPY_AFTER,
    ) -> None:
        if copy_after < 0:
            raise ValueError(f"copy_after must be >= 0, got {copy_after}")
        self.store = store
        self.queue = queue
        self.clock = clock
        self._defer = defer
        self._sticky = sticky
        self._spawn = spawn
        self._sent: dict[str, list[str]] = {}  # sent, removal from the outbox deferred
        self._outgoing: dict[str, set[str]] = {}  # being sent or sent, not yet removed
        self._flush_timer: asyncio.TimerHandle | None = None
        self._copy_after = copy_after
        self._held: set[str] = set()  # messages of attempts run ahead, not sent (yet)
        self._holds: deque[_Hold] = deque()  # the held messages by save, oldest first
        self._hold_timer: asyncio.TimerHandle | None = None  # ends the oldest hold
        self.closing = asyncio.Event()

    # ------------------------------------------------------------------ sending

    def later(
        self,
        run_id: str,
        messages: Sequence[Message],
        jobs: Mapping[str, j.Job],
        ahead: AbstractSet[str],
    ) -> asyncio.Future[None] | None:
        """Send a saved decision's messages in a task of their own (None: nothing to send now).

        ``jobs``: the jobs of those messages the caller has decoded, by message id. ``ahead``:
        ids of messages of attempts run ahead, which are not in the outbox (nothing to remove
        after sending them): they are held (see the module docstring) and are not part of
        the returned task.

        The task fails if a message could not be sent; an outbox message is sent again by the
        run's next decide. A message of an attempt run ahead is in no outbox, so nothing
        would send it again: this process owes it and keeps sending it in the background
        (backing off, see :meth:`_pay`) until the queue takes it or the process closes.
        """
        if ahead:
            held = [m for m in messages if m.id in ahead]
            if held:
                self._hold(run_id, held, jobs)
                messages = [m for m in messages if m.id not in ahead]
        if not messages:
            return None
        self._outgoing.setdefault(run_id, set()).update(m.id for m in messages)
        task = self._spawn(self._publish_next(run_id, messages, jobs))
        task.add_done_callback(_observe)
        return task

    def settled(self, ids: Iterable[str]) -> None:
        """A save committed the outcomes of these messages' attempts: held ones stay unsent."""
        self._held.difference_update(ids)

    async def _publish_next(
        self, run_id: str, messages: Sequence[Message], jobs: Mapping[str, j.Job]
    ) -> None:
        await asyncio.sleep(0)  # what the save woke (nodes run ahead) starts first
        await self._publish(run_id, messages, jobs)

    def _hold(self, run_id: str, held: Sequence[Message], jobs: Mapping[str, j.Job]) -> None:
        """Hold messages of attempts run ahead for ``copy_after`` seconds.

        One timer for all: the holds end in the order they began. Once the sender closes,
        nothing is held (no timer would be waited for).
        """
        if self.closing.is_set():
            self._spawn(self._copy(run_id, held, jobs))
            return
        self._held.update(m.id for m in held)
        loop = asyncio.get_running_loop()
        self._holds.append((loop.time() + self._copy_after, run_id, held, jobs))
        if self._hold_timer is None:
            self._hold_timer = loop.call_at(self._holds[0][0], self._end_holds)

    def _end_holds(self, *, every: bool = False) -> None:
        """Send the messages of the holds that are over (``every``: all) if still unsettled."""
        self._hold_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._holds and (every or self._holds[0][0] <= now):
            _due, run_id, held, jobs = self._holds.popleft()
            unsettled = [m for m in held if m.id in self._held]
            self._held.difference_update(m.id for m in held)
            if unsettled:
                self._spawn(self._copy(run_id, unsettled, jobs))
        if self._holds:
            self._hold_timer = loop.call_at(self._holds[0][0], self._end_holds)

    async def _copy(self, run_id: str, due: Sequence[Message], jobs: Mapping[str, j.Job]) -> None:
        try:
            await asyncio.gather(*(self.send(m, jobs.get(m.id)) for m in due))
        except Exception:
            await self._pay(run_id, due, jobs)

    async def _pay(self, run_id: str, owed: Sequence[Message], jobs: Mapping[str, j.Job]) -> None:
        """Send messages of attempts run ahead until the queue takes them.

        Their attempts are leased to this process by a save that stood: if they were
        dropped, the run would wait for the reconciler although this process lives (the run
        ahead may fail, and then the message is what runs the attempt again). Backs off from
        ``OWED_FIRST_WAIT`` to ``OWED_MAX_WAIT`` seconds; once the sender closes, one last
        try, then they are left to the reconciler (as after a crash), with a warning.
        """

        async def send() -> None:
            await asyncio.gather(*(self.send(m, jobs.get(m.id)) for m in owed))

        await self.keep_trying(send, run_id, unsent=f"{len(owed)} messages of attempts run ahead")

    async def keep_trying(
        self,
        attempt: Callable[[], Awaitable[str | None]],
        run_id: str,
        *,
        unsent: str,
        first_wait: float | None = None,
        until: float | None = None,
    ) -> None:
        """Call ``attempt`` until it returns None (done), backing off, or give up with a warning.

        ``attempt`` sends messages of attempts run ahead, which are in no outbox; a problem is
        what it returned instead (why it is not done yet) or raised. ``unsent`` names those
        messages in the warning logged on giving up (their attempts are left to the
        reconciler, as after a crash).

        Waits ``first_wait`` (None: ``OWED_FIRST_WAIT``) before the first try, then
        ``OWED_FIRST_WAIT`` doubling to ``OWED_MAX_WAIT`` seconds between tries, and gives up
        after a try made once the sender closes or past ``until`` (a ``time.monotonic()``
        deadline).
        """
        wait = OWED_FIRST_WAIT if first_wait is None else first_wait
        while True:
            if wait:
                await wait_event(self.closing, wait)
            try:
                problem = await attempt()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is None:
                return
            if self.closing.is_set() or (until is not None and time.monotonic() >= until):
                _log.warning(
                    "run %s: %s could not be sent (%s); the reconciler re-enqueues them "
                    "once their leases expire", run_id, unsent, problem,
                )  # fmt: skip
                return
            wait = min(OWED_MAX_WAIT, max(OWED_FIRST_WAIT, wait * 2))
            _log.debug("run %s: %s; again in %.1f s", run_id, problem, wait)

    def close(self) -> None:
        """Send held messages now; stop retrying owed ones (each gets one last try)."""
        self.closing.set()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        if self._holds:
            self._end_holds(every=True)

    async def publish(self, run_id: str, messages: Sequence[Message]) -> None:
        """Enqueue messages of the run's outbox, then drop them from it."""
        if messages:
            self._outgoing.setdefault(run_id, set()).update(m.id for m in messages)
            await self._publish(run_id, messages)

    async def _publish(
        self, run_id: str, messages: Sequence[Message], jobs: Mapping[str, j.Job] | None = None
    ) -> None:
        ids = [m.id for m in messages]
        known = jobs or {}
        try:
            await asyncio.gather(*(self.send(m, known.get(m.id)) for m in messages))
        except BaseException:
            self._forget(run_id, ids)  # not (all) sent: the next decide sends them again
            raise
        outgoing = self._outgoing.get(run_id, set())
        ids = [i for i in ids if i in outgoing]  # not removed by a save meanwhile
        if not ids:
            return
        if self._defer is None:
            try:
                await self.store.remove_outbox({run_id: ids})
            finally:
                self._forget(run_id, ids)
            return
        self._sent.setdefault(run_id, []).extend(ids)
        if sum(len(v) for v in self._sent.values()) >= _FLUSH_AT:
            self._start_flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self._defer, self._start_flush
            )

    def abandon(self) -> None:
        """Forget deferred removals and held messages (the process dies: nothing finishes)."""
        for timer in (self._flush_timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._hold_timer = None
        self._sent.clear()
        self._holds.clear()
        self._held.clear()

    def unstick(self) -> None:
        """Send without the sticky hint from now on (a draining worker takes no new job)."""
        self._sticky = False

    async def send(self, message: Message, job: j.Job | None = None) -> None:
        """Enqueue one message, delayed until its job's ``not_before`` (chained if too long).

        ``job``: the message's job when the caller has it (else it is decoded).
        """
        if job is None:
            job = j.decode_job(message.body)
        delay = 0.0 if job.not_before is None else max(0.0, job.not_before - self.clock())
        caps = self.queue.capabilities
        if not caps.native_delay:
            delay = 0.0
        elif caps.max_delay is not None:
            delay = min(delay, caps.max_delay)
        if self._sticky and delay == 0.0 and _sticky_job(job):
            await self.queue.enqueue(message, sticky=True)
            return
        await self.queue.enqueue(message, delay=delay)

    # ------------------------------------------------------------------ outbox removal

    def sending(self, run_id: str, message_id: str) -> bool:
        """Whether this process is sending or sent the message (its removal is pending)."""
        return message_id in self._outgoing.get(run_id, ())

    def removable(self, run_id: str) -> tuple[str, ...]:
        """Ids of the run's messages sent and waiting for their removal from the outbox."""
        return tuple(self._sent.get(run_id, ()))

    def removed(self, run_id: str, ids: Sequence[str]) -> None:
        """``ids`` left the run's outbox with a save: no deferred removal for them."""
        waiting = self._sent.get(run_id)
        if waiting is not None:
            gone = set(ids)
            waiting[:] = [m for m in waiting if m not in gone]
            if not waiting:
                del self._sent[run_id]
        self._forget(run_id, ids)

    def _forget(self, run_id: str, ids: Sequence[str]) -> None:
        outgoing = self._outgoing.get(run_id)
        if outgoing is not None:
            outgoing.difference_update(ids)
            if not outgoing:
                del self._outgoing[run_id]

    def _start_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._spawn(self.flush())

    async def flush(self) -> None:
        """Remove every sent message still waiting for a deferred removal."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        sent, self._sent = self._sent, {}
        if not sent:
            return
        try:
            await self.store.remove_outbox(sent)
        except Exception:  # left in the outbox: sent again later, which workers tolerate
            _log.warning("removing %d sent outbox messages failed", len(sent), exc_info=True)
        finally:
            for run_id, ids in sent.items():
                self._forget(run_id, ids)


def _sticky_job(job: j.Job) -> bool:
    """Whether a job goes out with the sticky hint: a node attempt due now."""
    return job.kind is j.JobKind.RUN_NODE and job.not_before is None


def _observe(task: asyncio.Future[None]) -> None:
    """Retrieve a background send's failure (its callers, if any, see it too)."""
    if not task.cancelled() and task.exception() is not None:
        _log.debug("sending an outbox failed; it is sent again later", exc_info=task.exception())
