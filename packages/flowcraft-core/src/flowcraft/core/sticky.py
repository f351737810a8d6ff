"""Run-ahead for queues without consumer affinity: local deliveries and their durable copies.

Public, for adapter authors (no I/O here). A queue that cannot give a dead consumer's messages
to others by itself (SQS, Azure Queue Storage) can still honour ``enqueue(sticky=True)``
(capability ``sticky``) with two deliveries of one message:

* a *local* one (:class:`LocalDelivery`), handed to the adapter's own consumer's next
  ``receive`` at once, with no trip through the broker;
* a durable *copy* sent to the jobs queue, invisible for the sticky delay (SQS's
  ``DelaySeconds``, Azure's initial visibility timeout). If the worker dies, the copy reaches
  another consumer after that delay, and the runtime's claim waits for the dead runner's lease.

:class:`Home` is the bookkeeping of one adapter's local deliveries and decides what a copy
that comes back to that adapter means (:meth:`Home.arrived`):

* ``done``: its local delivery was acked or dead-lettered (remembered for ``remember``
  seconds): the copy is a duplicate of finished work, to be deleted without reaching the
  consumer;
* ``join``: its local delivery is out (being handled): the copy is settled with it (deleted on
  its ack, given back on its nack, extended with it; ``LocalDelivery.copy``);
* ``deliver``: its local delivery has not been taken yet, or waits out a nack: the copy replaces
  it (the local delivery is released and returned, so the adapter can cancel its nack timer);
  so does any copy the adapter knows nothing of (another consumer's message, or one whose local
  delivery was dropped when the consumer stopped receiving).

A copy that reaches another consumer is an ordinary delivery there (the runtime's claims make
it a duplicate of finished work, or wait for a live holder's lease). At most ``limit`` local
deliveries are unsettled at once; past that, the adapter sends sticky enqueues as plain ones.

:class:`LocalDeliveries` is the part every such adapter shares, composed by it (no base
class): it holds the ``Home`` and is the :class:`LocalSettler` of its local deliveries (what
their ``ack``/``nack``/``extend``/``dead_letter`` mean for the copy, a nack's delay as a
timer on the running loop), calling back the adapter only for what is its server's: whether
an error says a copy went on to another consumer, deleting a copy as sent, sending a
dead letter. What the adapter does itself (I/O): send the copy and then ``add`` the local
delivery, hand ``home.take``'s deliveries out in ``receive`` before asking the broker, and
settle a returning copy per ``LocalDeliveries.arrived``. ``LocalDelivery`` is generic over
the adapter's delivery type (the copy's). ``Home`` is pure bookkeeping (no I/O, no timers).

:func:`sticky_delay_seconds` and :func:`sticky_delay_option` validate the adapters' shared
``sticky_delay`` option: 1..50 seconds (below the 60 s a worker remembers an attempt it ran
ahead, so a copy arriving late still finds it), None turning run-ahead off.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Literal, Protocol, TypeVar

from flowcraft.core import ports

__all__ = [
    "DEFAULT_STICKY_DELAY",
    "HOME_LIMIT",
    "HOME_REMEMBER",
    "MAX_STICKY_DELAY",
    "Fate",
    "Home",
    "LocalDeliveries",
    "LocalDelivery",
    "LocalSettler",
    "sticky_delay_option",
    "sticky_delay_seconds",
]

#: What a copy that came back means (see the module).
Fate = Literal["done", "join", "deliver"]

#: The longest sticky delay, seconds: well below the 60 s a worker remembers an attempt it ran
#: ahead (a copy surfacing later would run it again).
MAX_STICKY_DELAY = 50
#: The default sticky delay of a backend factory (at most its visibility timeout), seconds.
DEFAULT_STICKY_DELAY = 30
#: Local deliveries of one adapter unsettled at once (past that, sticky enqueues go out plain).
HOME_LIMIT = 1000
#: Seconds a finished local delivery's copy is recognised (and dropped) when it comes back.
HOME_REMEMBER = 600.0

_C = TypeVar("_C")
_D = TypeVar("_D", bound=ports.Delivery)


class LocalSettler(Protocol[_C]):
    """What a local delivery asks its adapter to do (implemented by the queue adapter)."""

    async def local_ack(self, delivery: LocalDelivery[_C]) -> None:
        """The job is done: delete its joined copy, drop the delayed copy when it comes."""
        ...

    async def local_nack(self, delivery: LocalDelivery[_C], seconds: float) -> None:
        """Deliver it again in ``seconds`` (here, or through its copy)."""
        ...

    async def local_extend(self, delivery: LocalDelivery[_C], seconds: float) -> None:
        """Keep its joined copy (if any) invisible for ``seconds`` more."""
        ...

    async def local_dead(self, delivery: LocalDelivery[_C], reason: str) -> None:
        """Dead-letter it with ``reason`` (its copy is then dropped when it comes)."""
        ...


class LocalDelivery(Generic[_C]):
    """A sticky message handed to the adapter's own consumer (a ``ports.Delivery``).

    ``copy`` is its durable twin once that came back to this adapter while the local delivery
    was still unsettled (joined: settled with it). ``sent`` is the adapter's handle on the copy
    as it was sent, where the broker returns one that can settle a message not yet received
    (Azure's message id and pop receipt): the adapter may then delete the copy at the local
    ack, before it ever comes back. ``state``: ``ready`` (waiting for
    ``receive``), ``out`` (returned), ``waiting`` (nacked, ready again after the delay),
    ``settling``, ``settled``. ``delivery_count`` counts local deliveries from 1 (a nack
    delivered here again adds one). Settled once: later calls, and ``extend`` after a
    settlement, are no-ops; a settlement that raised leaves it out (the caller may retry).
    """

    __slots__ = ("_body", "_message_id", "_settler", "copy", "count", "sent", "state", "timer")

    def __init__(
        self, *, message_id: str, body: bytes, settler: LocalSettler[_C], sent: object = None
    ) -> None:
        self._message_id = message_id
        self._body = body
        self._settler = settler
        self.count = 1
        self.state = "ready"
        self.copy: _C | None = None
        self.sent = sent
        self.timer: object = None  # the adapter's handle on a nack's delay (e.g. a TimerHandle)

    def __repr__(self) -> str:
        return f"LocalDelivery({self._message_id!r}, count={self.count}, {self.state})"

    @property
    def message_id(self) -> str:
        """The message's id (its dedup id)."""
        return self._message_id

    @property
    def body(self) -> bytes:
        """The message body, as enqueued."""
        return self._body

    @property
    def delivery_count(self) -> int:
        """Local deliveries so far, this one included."""
        return self.count

    async def ack(self) -> None:
        """Done for good (its copy is deleted when, or since, it reached this adapter)."""
        if self._begin():
            await self._finish(self._settler.local_ack(self))

    async def nack(self, delay: float = 0.0) -> None:
        """Deliver it again after ``delay`` seconds."""
        if self._begin():
            await self._finish(self._settler.local_nack(self, delay))

    async def extend(self, seconds: float) -> None:
        """Keep a joined copy invisible to others for ``seconds`` from now."""
        if self.state == "out":
            await self._settler.local_extend(self, seconds)

    async def dead_letter(self, reason: str) -> None:
        """Dead-letter the message with ``reason``."""
        if self._begin():
            await self._finish(self._settler.local_dead(self, reason))

    def _begin(self) -> bool:
        if self.state != "out":
            return False
        self.state = "settling"
        return True

    async def _finish(self, settling: Awaitable[None]) -> None:
        try:
            await settling
        except BaseException:
            self.state = "out"
            raise
        if self.state == "settling":  # (a nack that delivers it here again made it "waiting")
            self.state = "settled"


class Home(Generic[_C]):
    """Local deliveries of one adapter, and what the copies coming back mean (see module).

    Args:
        limit: Local deliveries unsettled at once (``has_room`` is False at the limit).
        remember: Seconds the id of a finished local delivery is kept (its copy is ``done``).
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        limit: int = HOME_LIMIT,
        remember: float = HOME_REMEMBER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or remember <= 0:
            raise ValueError(f"limit and remember must be > 0, got {limit} and {remember}")
        self.limit = limit
        self.remember = remember
        self._clock = clock
        self._ready: collections.deque[LocalDelivery[_C]] = collections.deque()
        self._unsettled: dict[str, LocalDelivery[_C]] = {}
        self._done: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        """Local deliveries not settled yet."""
        return len(self._unsettled)

    @property
    def has_room(self) -> bool:
        """Whether another local delivery may be added."""
        return len(self._unsettled) < self.limit

    def holds(self, message_id: str) -> bool:
        """Whether a local delivery of ``message_id`` is unsettled."""
        return message_id in self._unsettled

    def add(self, local: LocalDelivery[_C]) -> None:
        """A new local delivery, ready for ``take``."""
        self._unsettled[local.message_id] = local
        self._ready.append(local)

    @property
    def ready(self) -> int:
        """Local deliveries waiting for ``take``."""
        return len(self._ready)

    def take(self, count: int) -> list[LocalDelivery[_C]]:
        """Up to ``count`` ready local deliveries, now out (handed to the consumer)."""
        taken: list[LocalDelivery[_C]] = []
        while self._ready and len(taken) < count:
            local = self._ready.popleft()
            local.state = "out"
            taken.append(local)
        return taken

    def again(self, local: LocalDelivery[_C]) -> bool:
        """A nacked local delivery is due again: ready once more (False: it was dropped)."""
        if self._unsettled.get(local.message_id) is not local or local.state != "waiting":
            return False
        local.count += 1
        local.state = "ready"
        self._ready.append(local)
        return True

    def drop_ready(self) -> list[LocalDelivery[_C]]:
        """Forget the local deliveries not taken or waiting (the consumer stops receiving).

        Their copies then reach whoever receives them.
        """
        dropped = [d for d in self._unsettled.values() if d.state in {"ready", "waiting"}]
        for local in dropped:
            self.release(local)
        return dropped

    def release(self, local: LocalDelivery[_C]) -> None:
        """``local`` is no longer this adapter's to deliver (its copy is the message now).

        Its ``copy`` and ``sent`` are cleared: take them before.
        """
        if self._unsettled.get(local.message_id) is local:
            del self._unsettled[local.message_id]
        if local.state == "ready":
            self._ready.remove(local)
        local.state = "settled" if local.state == "settling" else local.state
        local.copy = local.sent = None

    def finished(self, local: LocalDelivery[_C]) -> None:
        """``local`` was acked (or dead-lettered): its copy is dropped when it comes."""
        self.release(local)
        now = self._clock()
        self._done[local.message_id] = now + self.remember
        self._done.move_to_end(local.message_id)
        while self._done:  # oldest first: expired ones, and beyond the bound
            oldest, until = next(iter(self._done.items()))
            if until > now and len(self._done) <= 16 * self.limit:
                break
            del self._done[oldest]

    def arrived(self, message_id: str) -> tuple[Fate, LocalDelivery[_C] | None]:
        """What a copy of ``message_id`` that came back to this adapter means (see module)."""
        until = self._done.get(message_id)
        if until is not None and until > self._clock():
            return "done", None
        local = self._unsettled.get(message_id)
        if local is None:
            return "deliver", None
        if local.state in {"out", "settling"}:
            return "join", local
        self.release(local)  # ready or waiting: the copy takes its place
        return "deliver", local


class LocalDeliveries(Generic[_D]):
    """One adapter's local deliveries: their ``home``, and the :class:`LocalSettler` they call.

    The adapter owns one (composition, see the module), passes it as each local delivery's
    settler (through :meth:`add`) and gives it callables for what only it knows, all called
    on the event loop:

    Args:
        check_open: Raises the adapter's error once it is closed (``what``: the operation);
            the first thing every settlement does.
        wake: Wakes a ``receive`` waiting between polls (a nacked local delivery is ready).
        stale: Whether an exception a joined copy's ``extend`` raised says the copy went on
            to another consumer (its receipt is stale): the local delivery goes on alone.
        send_dead: Sends a local delivery's message (no copy joined) to the dead-letter
            queue with a reason; False: the adapter has none (it logs that): the local
            delivery is then released and its copy goes on.
        forget: Called with a copy that went on (the adapter stops tracking it).
        drop_sent: Deletes a copy as sent (``LocalDelivery.sent``, given with its message
            id) when its local delivery finished before the copy came back; never raises (a
            copy it leaves comes back and is dropped then). None: dropped when it comes.
        home: The bookkeeping (``Home()`` by default).
    """

    def __init__(
        self,
        *,
        check_open: Callable[[str], None],
        wake: Callable[[], None],
        stale: Callable[[Exception], bool],
        send_dead: Callable[[LocalDelivery[_D], str], Awaitable[bool]],
        forget: Callable[[_D], None] | None = None,
        drop_sent: Callable[[str, object], Awaitable[None]] | None = None,
        home: Home[_D] | None = None,
    ) -> None:
        self.home: Home[_D] = home if home is not None else Home()
        self._check_open, self._wake, self._stale = check_open, wake, stale
        self._send_dead, self._forget, self._drop_sent = send_dead, forget, drop_sent
        self._consuming = False  # the adapter's consumer receives (and did not stop)
        self._stopped = False

    def receiving(self) -> None:
        """The adapter's consumer receives: sticky enqueues may stay here (until ``stop``)."""
        self._consuming = not self._stopped

    @property
    def accepts(self) -> bool:
        """Whether a sticky enqueue goes to the adapter's own consumer now."""
        return self._consuming and self.home.has_room

    def add(self, message_id: str, body: bytes, *, sent: object = None) -> None:
        """A sticky message whose copy was just sent, for the next ``receive`` (it is woken).

        Nothing happens if sticky enqueues no longer stay here (``accepts``) or a local
        delivery of ``message_id`` is unsettled (the copy is then an ordinary message).
        """
        if not self.accepts or self.home.holds(message_id):
            return
        self.home.add(LocalDelivery(message_id=message_id, body=body, settler=self, sent=sent))
        self._wake()

    def arrived(self, copy: _D) -> Fate:
        """Settles a copy that came back to the adapter per ``Home.arrived``; its fate.

        ``done``: the adapter deletes it unseen. ``join``: it is now its local delivery's
        ``copy`` (the adapter keeps it unsettled, undelivered). ``deliver``: the adapter
        delivers it (a local delivery it replaces was released, its nack's timer cancelled).
        """
        fate, local = self.home.arrived(copy.message_id)
        if fate == "join":
            assert local is not None
            local.copy = copy
        elif local is not None:
            _cancel(local.timer)
        return fate

    def stop(self) -> None:
        """The consumer stops receiving: local deliveries not out are dropped (copies go on).

        Sticky enqueues no longer stay here; a later nack goes through the copy.
        """
        self._consuming, self._stopped = False, True
        for local in self.home.drop_ready():
            _cancel(local.timer)

    async def local_ack(self, delivery: LocalDelivery[_D]) -> None:
        """Done: its copy is deleted (joined, or as sent), a later one dropped when it comes."""
        self._check_open("ack")
        copy, sent = delivery.copy, delivery.sent
        self.home.finished(delivery)
        if copy is not None:
            await copy.ack()
        elif sent is not None and self._drop_sent is not None:
            await self._drop_sent(delivery.message_id, sent)

    async def local_nack(self, delivery: LocalDelivery[_D], seconds: float) -> None:
        """Here again after ``seconds``; through its copy if it joined or the consumer stopped."""
        self._check_open("nack")
        copy = delivery.copy
        if copy is not None or self._stopped:
            self.home.release(delivery)
            if copy is not None:
                await copy.nack(seconds)
            return
        delivery.state = "waiting"
        delivery.timer = asyncio.get_running_loop().call_later(
            max(0.0, seconds), self._again, delivery
        )

    def _again(self, delivery: LocalDelivery[_D]) -> None:
        if self.home.again(delivery):
            self._wake()

    async def local_extend(self, delivery: LocalDelivery[_D], seconds: float) -> None:
        """Its joined copy stays invisible ``seconds`` more (nothing to do without one)."""
        self._check_open("extend")
        copy = delivery.copy
        if copy is None:
            return
        try:
            await copy.extend(seconds)
        except Exception as exc:
            if not self._stale(exc):
                raise
            delivery.copy = None  # it went on to another consumer: a duplicate there
            if self._forget is not None:
                self._forget(copy)

    async def local_dead(self, delivery: LocalDelivery[_D], reason: str) -> None:
        """Dead-letter it (through its joined copy if any); its copy is dropped then."""
        self._check_open("dead_letter")
        copy, sent = delivery.copy, delivery.sent
        if copy is not None:
            self.home.finished(delivery)
            await copy.dead_letter(reason)
            return
        if not await self._send_dead(delivery, reason):
            self.home.release(delivery)  # no dead-letter queue: its copy goes on
            return
        self.home.finished(delivery)
        if sent is not None and self._drop_sent is not None:
            await self._drop_sent(delivery.message_id, sent)


def _cancel(timer: object) -> None:
    if isinstance(timer, asyncio.TimerHandle):
        timer.cancel()


def sticky_delay_seconds(delay: float | None) -> int | None:
    """A sticky delay given to an adapter, as whole seconds (rounded up), or None (off).

    Raises:
        ValueError: not a number of seconds within 1..``MAX_STICKY_DELAY``.
    """
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, int | float) or math.isnan(delay):
        raise ValueError(f"sticky_delay must be a number of seconds or None, got {delay!r}")
    if not 0 < delay <= MAX_STICKY_DELAY:
        raise ValueError(
            f"sticky_delay must be within 1..{MAX_STICKY_DELAY} seconds (a worker remembers "
            f"an attempt it ran ahead for 60 s), got {delay}"
        )
    return max(1, math.ceil(delay))


def sticky_delay_option(value: float | str | None, *, visibility_timeout: int) -> int | None:
    """A backend factory's ``sticky_delay`` option: seconds, ``none``/``off``, or ``default``.

    ``default`` is ``DEFAULT_STICKY_DELAY``, at most ``visibility_timeout`` (a crashed worker's
    attempts run ahead come back no later than a crashed consumer's plain message).

    Raises:
        ValueError: not a number of seconds within 1..``MAX_STICKY_DELAY`` (``option ...``).
    """
    if value == "default":
        return min(DEFAULT_STICKY_DELAY, visibility_timeout)
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "off"}):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(
            f"option sticky_delay: {value!r} is not a number of seconds (or none)"
        ) from None
    try:
        return sticky_delay_seconds(seconds)
    except ValueError as exc:
        raise ValueError(f"option {exc}") from None
