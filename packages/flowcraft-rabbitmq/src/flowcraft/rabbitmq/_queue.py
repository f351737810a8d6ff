"""``RabbitMqAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on RabbitMQ.

Spec sheet
----------
* Driver: pika's ``AsyncioConnection`` on the running event loop (no threads, never blocks the
  loop). A publisher connection (one channel in confirm mode), and per consumed queue a
  consumer connection (one channel, ``basic.qos(prefetch)``, ``basic.consume`` with manual
  acks): the jobs queue and, on a worker, its sticky queue.
* Queues (all durable, declared on first use, classic)::

      {prefix}.jobs          the jobs; optional x-consumer-timeout (``consumer_timeout``)
      {prefix}.dead          poison messages, with the reason in header x-flowcraft-reason
      {prefix}.delay.{ms}    one per rung of the delay ladder: x-message-ttl = ms,
                             dead-lettered (default exchange) back to {prefix}.jobs
      {prefix}.sticky.{id}   one per consuming adapter (a worker): x-message-ttl =
                             sticky_timeout, dead-lettered to {prefix}.jobs; x-expires 60 s+

* Sticky enqueues (``enqueue(sticky=True)``, the next steps of a run a worker just decided):
  to the adapter's own sticky queue, consumed with its own prefetch and handed out ahead of
  the jobs queue's deliveries (continuations first, so a backlog of new runs does not starve
  them), so the worker that holds the run's state in memory runs them. At most 4 x
  ``prefetch`` sticky messages wait at once (else the jobs queue). A message not taken within
  ``sticky_timeout`` (the worker died, or is stuck) expires into the jobs queue; an unacked
  one of a dead worker goes back to the sticky queue and then expires the same way.

* Enqueue: persistent messages (delivery mode 2), ``mandatory`` and publisher confirms:
  ``enqueue`` returns only once the broker has confirmed (written the message to the durable
  queue); a broker nack, an unroutable message, a lost connection or no confirm within
  ``operation_timeout`` raise a backend error (the message may or may not be stored: at least
  once, ids are deterministic and the runtime dedupes).
* Delays: ``_delays`` (TTL ladder with exact hops): never early, at most ~50 ms late, no
  consumer held, unlimited (``max_delay=None``).
* Receive: prefetch = ``prefetch`` (default: ``max_messages`` of the first ``receive``; set it to
  the worker's concurrency). Deliveries buffered by the client count against it.
* Settling, delivery counts, dead-lettering, ``extend``: see ``_delivery``. RabbitMQ has no
  visibility timeout: an unacked delivery stays with its consumer until the channel closes or
  the broker's consumer timeout (``consumer_timeout`` in rabbitmq.conf, 30 min by default;
  per queue ``x-consumer-timeout`` on RabbitMQ >= 3.12, set through ``consumer_timeout=``)
  closes the channel, which then requeues it. Nodes running longer than that need a larger
  broker timeout; the run store's attempt lease is what keeps two workers off one node.
* Recovery: a lost connection (broker restart, network) is noticed at once; the next
  ``enqueue``/``receive`` reconnects with exponential backoff (50 ms doubling to 1 s) for up to
  ``connect_timeout`` seconds, then raises ``TransientBackendError``. Unacked deliveries of the
  dead channel are redelivered by the broker (``redelivered``), and settling one of them raises
  ``TransientBackendError``; buffered, not yet returned deliveries of it are dropped.
* Draining: ``stop_receiving()`` cancels the consumers (``basic.cancel``; the channels stay
  open, so deliveries already handed out can still be settled) and requeues what the prefetch
  buffer holds, so a worker that drains a long node does not sit on jobs others could run.
* Closing: ``close()`` closes every connection the adapter made, also those still being opened
  (by a ``receive`` or ``enqueue`` under way, which then fail) or aborted, and returns once
  their sockets are closed. A closed adapter opens no connection again: ``enqueue`` and
  ``receive`` raise ``PermanentBackendError`` (a killed worker's late sends fail, as in a dead
  process, instead of leaving a connection nobody closes). ``delete_queues`` still works.
* Errors: pika and socket errors leave as ``TransientBackendError``/``PermanentBackendError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
import pika.spec
from flowcraft.core import ports
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.rabbitmq._amqp import Link, Untyped
from flowcraft.rabbitmq._delays import LADDER_MS, delay_ms, plan_hop
from flowcraft.rabbitmq._delivery import DELAY_REST, RabbitMqDelivery, count_deliveries
from flowcraft.rabbitmq._errors import amqp_errors

__all__ = ["RabbitMqAdapter"]

_log = logging.getLogger("flowcraft.rabbitmq")
_T = TypeVar("_T")
_Headers = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class _Incoming:
    source: _Consumer
    generation: int
    tag: int
    redelivered: bool
    message_id: str
    headers: _Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class _Lost:
    """A consumer's channel died (queued ahead of everything: reconnect it)."""

    source: _Consumer


#: Sticky messages that may wait for this adapter's consumer at once, in prefetches.
_STICKY_WAITING = 16
#: Buffer priorities: a lost channel first, then sticky deliveries, then the jobs queue.
_LOST, _STICKY, _JOBS = -1, 0, 1
_Buffered = tuple[int, int, "_Incoming | _Lost"]


async def _with_backoff(connect: Callable[[], Awaitable[_T]], deadline: float) -> _T:
    """Call ``connect`` until it succeeds, backing off on transient errors until ``deadline``."""
    loop = asyncio.get_running_loop()
    pause = 0.05
    while True:
        try:
            return await connect()
        except TransientBackendError:
            if loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


class _Publisher:
    """One channel in confirm mode; ``publish`` returns once the broker confirmed."""

    def __init__(self, adapter: RabbitMqAdapter) -> None:
        self._adapter = adapter
        self._link: Link | None = None
        self._lock = asyncio.Lock()
        self._seq = 0
        self._pending: dict[int, tuple[asyncio.Future[None], str, str]] = {}
        self._returned: set[int] = set()
        self._declared: set[str] = set()

    async def publish(self, queue: str, message_id: str, body: bytes, headers: _Headers) -> None:
        link = await self._ready()
        if queue not in self._declared:
            await self._adapter.declare(link, queue)
            self._declared.add(queue)
        confirmed = self._send(link, queue, message_id, body, headers)
        await asyncio.wait_for(asyncio.shield(confirmed), self._adapter.operation_timeout)

    def _send(
        self, link: Link, queue: str, message_id: str, body: bytes, headers: _Headers
    ) -> asyncio.Future[Any]:
        link.check("publish")
        self._seq += 1
        seq = self._seq
        future = link.track(asyncio.get_running_loop().create_future())
        self._pending[seq] = (future, queue, message_id)
        future.add_done_callback(lambda _: self._pending.pop(seq, None))
        properties = pika.BasicProperties(
            message_id=message_id,
            delivery_mode=pika.DeliveryMode.Persistent,
            headers=dict(headers) or None,
        )
        with amqp_errors("publish"):
            link.channel.basic_publish("", queue, body, properties, mandatory=True)
        return future

    async def _ready(self) -> Link:
        async with self._lock:
            if self._link is None or not self._link.is_open:
                self._link = await self._adapter.connect(self._open)
            return self._link

    async def _open(self) -> Link:
        link = self._adapter.new_link(on_lost=lambda: None)
        await link.open(self._adapter.connect_timeout)
        try:
            timeout = self._adapter.operation_timeout
            self._seq, self._pending, self._returned, self._declared = 0, {}, set(), set()
            await link.rpc("confirm_delivery", timeout, ack_nack_callback=self._on_confirm)
            link.channel.add_on_return_callback(self._on_return)
        except BaseException:
            link.abort()
            raise
        return link

    def _on_confirm(self, frame: Untyped) -> None:
        method = frame.method
        tag, multiple = int(method.delivery_tag), bool(method.multiple)
        nacked = isinstance(method, pika.spec.Basic.Nack)
        for seq in [s for s in self._pending if s == tag or (multiple and s <= tag)]:
            future = self._pending[seq][0]
            if future.done():
                continue
            if nacked:
                future.set_exception(TransientBackendError("publish: the broker nacked it"))
            elif seq in self._returned:
                reason = f"publish: message unroutable (no queue {self._pending[seq][1]!r})"
                future.set_exception(PermanentBackendError(reason))
            else:
                future.set_result(None)
            self._returned.discard(seq)

    def _on_return(
        self, _channel: Untyped, method: Untyped, properties: Untyped, _body: bytes
    ) -> None:
        key = (str(method.routing_key), str(properties.message_id))
        for seq in sorted(self._pending):
            if seq not in self._returned and self._pending[seq][1:] == key:
                self._returned.add(seq)
                return


class _Consumer:
    """One connection consuming one queue into the adapter's buffer (bounded by prefetch)."""

    def __init__(self, adapter: RabbitMqAdapter, queue: str, priority: int) -> None:
        self._adapter = adapter
        self.queue = queue
        self.priority = priority
        self._link: Link | None = None
        self._lock = asyncio.Lock()
        self._tag: str | None = None
        self.prefetch = 0
        self.stopped = False

    @property
    def generation(self) -> int:
        """The generation of the live channel (0 when there is none)."""
        return self._link.generation if self._link is not None and self._link.is_open else 0

    async def ready(self, prefetch: int) -> None:
        """Connect and consume unless a live channel does (``prefetch`` fixed on first call)."""
        self.prefetch = self.prefetch or prefetch
        async with self._lock:
            if self.stopped:
                return
            if self._link is None or not self._link.is_open:
                self._link = await self._adapter.connect(
                    functools.partial(self._open, self.prefetch)
                )

    async def _open(self, prefetch: int) -> Link:
        link = self._adapter.new_link(on_lost=lambda: self._buffer(_LOST, _Lost(self)))
        await link.open(self._adapter.connect_timeout)
        try:
            await self._consume(link, prefetch)
        except BaseException:
            link.abort()
            raise
        return link

    def _buffer(self, priority: int, item: _Incoming | _Lost) -> None:
        self._adapter.buffer.put_nowait((priority, next(self._adapter.arrivals), item))

    async def _consume(self, link: Link, prefetch: int) -> None:
        timeout = self._adapter.operation_timeout
        await link.rpc("basic_qos", timeout, prefetch_count=prefetch)
        await self._adapter.declare(link, self.queue)
        ok = await link.rpc(
            "basic_consume",
            timeout,
            queue=self.queue,
            on_message_callback=functools.partial(self._on_message, link.generation),
            auto_ack=False,
        )
        self._tag = str(ok.method.consumer_tag)

    async def stop(self) -> None:
        """Cancel the consumer: the broker sends it nothing more (the channel stays open)."""
        async with self._lock:
            if self.stopped:
                return
            self.stopped = True
            link, tag, self._tag = self._link, self._tag, None
            if link is None or not link.is_open or tag is None:
                return
            await link.rpc("basic_cancel", self._adapter.operation_timeout, consumer_tag=tag)

    def _on_message(
        self, generation: int, _channel: Untyped, method: Untyped, properties: Untyped, body: bytes
    ) -> None:
        if self.priority == _STICKY:
            self._adapter.sticky_arrived()
        incoming = _Incoming(
            source=self,
            generation=generation,
            tag=int(method.delivery_tag),
            redelivered=bool(method.redelivered),
            message_id=str(properties.message_id or ""),
            headers=dict(properties.headers or {}),
            body=bytes(body),
        )
        self._buffer(self.priority, incoming)

    def settle(self, generation: int, tag: int, *, requeue: bool | None = None) -> None:
        """Ack (``requeue is None``) or nack a delivery of the channel ``generation``."""
        link = self._link
        if link is None or link.generation != generation or not link.is_open:
            raise TransientBackendError(
                "settle: the delivery's channel is closed; the broker redelivers the message"
            )
        with amqp_errors("ack" if requeue is None else "nack"):
            if requeue is None:
                link.channel.basic_ack(tag)
            else:
                link.channel.basic_nack(tag, requeue=requeue)


class RabbitMqAdapter:
    """The job queue of one namespace on RabbitMQ (implements ``ports.JobQueue``).

    Args:
        url_or_parameters: An ``amqp://`` URL or ``pika.ConnectionParameters``.
        prefix: Namespace of the queue names (``{prefix}.jobs``, ``{prefix}.dead``, ...).
        queue_name: The jobs queue (default ``{prefix}.jobs``).
        dead_letter_queue_name: The dead-letter queue (default ``{prefix}.dead``).
        prefetch: Unacked deliveries this consumer holds at most (default: ``max_messages``
            of the first ``receive``); use the worker's concurrency.
        consumer_timeout: Seconds, declared as ``x-consumer-timeout`` on the jobs queue
            (RabbitMQ >= 3.12; older brokers use their global ``consumer_timeout``).
        sticky_timeout: Seconds a sticky message waits for this adapter's consumer before it
            moves to the jobs queue (any consumer); None turns sticky enqueues off.
        connect_timeout: Seconds to keep reconnecting before a ``TransientBackendError``.
        operation_timeout: Seconds to wait for a broker reply (confirms, declarations).
    """

    def __init__(
        self,
        url_or_parameters: str | pika.ConnectionParameters,
        *,
        prefix: str = "flowcraft",
        queue_name: str | None = None,
        dead_letter_queue_name: str | None = None,
        prefetch: int | None = None,
        consumer_timeout: float | None = None,
        sticky_timeout: float | None = 2.0,
        connect_timeout: float = 10.0,
        operation_timeout: float = 30.0,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if prefetch is not None and prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, got {prefetch}")
        self.parameters = _parameters(url_or_parameters)
        self.prefix = prefix
        self.queue_name = queue_name or f"{prefix}.jobs"
        self.dead_letter_queue_name = dead_letter_queue_name or f"{prefix}.dead"
        self.prefetch = prefetch
        self.consumer_timeout = consumer_timeout
        if sticky_timeout is not None and sticky_timeout <= 0:
            raise ValueError(f"sticky_timeout must be > 0 or None, got {sticky_timeout}")
        self.sticky_timeout = sticky_timeout
        self.sticky_queue_name = f"{prefix}.sticky.{uuid.uuid4().hex[:12]}"
        self._sticky_waiting: collections.deque[float] = collections.deque()
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self._publisher = _Publisher(self)
        self.buffer: asyncio.PriorityQueue[_Buffered] = asyncio.PriorityQueue()
        self.arrivals = itertools.count()
        self._consumer = _Consumer(self, self.queue_name, _JOBS)
        self._sticky = (
            None if sticky_timeout is None else _Consumer(self, self.sticky_queue_name, _STICKY)
        )
        self._hops: set[asyncio.Task[None]] = set()
        #: Every link made and not yet gone for good (open, opening or aborted): close() ends them.
        self._links: set[Link] = set()
        self._closed = False

    @property
    def capabilities(self) -> ports.QueueCapabilities:
        """Native delays (unlimited, via the TTL ladder), a dead-letter queue, no dedup, sticky."""
        return ports.QueueCapabilities(
            native_delay=True,
            max_delay=None,
            dead_letter=True,
            dedup=False,
            sticky=self.sticky_timeout is not None,
        )

    def delay_queue_name(self, rung_ms: int) -> str:
        """The name of the delay queue of one ladder rung."""
        return f"{self.prefix}.delay.{rung_ms}"

    # ------------------------------------------------------------------ port

    async def enqueue(
        self, message: ports.Message, *, delay: float = 0.0, sticky: bool = False
    ) -> None:
        """Publish persistently and wait for the broker's confirm (delayed via the ladder).

        ``sticky`` (no delay): to this adapter's own sticky queue while its consumer runs and
        has fewer than 4 x ``prefetch`` sticky messages waiting; else to the jobs queue.
        """
        if sticky and delay <= 0 and self._take_sticky():
            await self._publish(self.sticky_queue_name, message.id, message.body, 0, {})
            return
        await self._publish(self.queue_name, message.id, message.body, delay_ms(delay), {})

    def _take_sticky(self) -> bool:
        """Whether one more message may go to the sticky queue now (and count it if so)."""
        if self._sticky is None or self.sticky_timeout is None or not self._sticky.generation:
            return False
        waiting = self._sticky_waiting
        now = asyncio.get_running_loop().time()
        while waiting and waiting[0] < now - self.sticky_timeout:
            waiting.popleft()  # moved on to the jobs queue by now
        if len(waiting) >= _STICKY_WAITING * max(1, self._sticky.prefetch):
            return False
        waiting.append(now)
        return True

    def sticky_arrived(self) -> None:
        """A sticky message reached the consumer: one fewer waiting."""
        if self._sticky_waiting:
            self._sticky_waiting.popleft()

    async def receive(self, max_messages: int, wait: float) -> Sequence[ports.Delivery]:
        """Up to ``max_messages`` deliveries, waiting up to ``wait`` seconds for the first."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        prefetch = self.prefetch or max_messages
        await self._consumer.ready(prefetch)
        if self._sticky is not None:
            await self._sticky.ready(prefetch)
        out: list[ports.Delivery] = []
        while len(out) < max_messages:
            incoming = await self._next(deadline if not out else loop.time())
            if incoming is None:
                break
            delivery = self._accept(incoming)
            if delivery is not None:
                out.append(delivery)
        return out

    async def stop_receiving(self) -> None:
        """Cancel the consumers and requeue what they fetched but ``receive`` did not return.

        Deliveries already returned stay settleable until ``close``. Idempotent.
        """
        consumers = [c for c in (self._consumer, self._sticky) if c is not None]
        for consumer in consumers:
            with contextlib.suppress(BackendError):  # a dead channel requeues them anyway
                await consumer.stop()
        while not self.buffer.empty():
            _, _, item = self.buffer.get_nowait()
            if isinstance(item, _Incoming) and item.generation == item.source.generation:
                with contextlib.suppress(BackendError):
                    item.source.settle(item.generation, item.tag, requeue=True)

    async def close(self) -> None:
        """Close every connection, returning once their sockets are closed (idempotent).

        Unacked deliveries go back to the queue. Connections being opened meanwhile are torn
        down (their ``enqueue``/``receive`` fail); the adapter opens none again.
        """
        self._closed = True
        for task in list(self._hops):
            task.cancel()
        await asyncio.gather(*self._hops, return_exceptions=True)
        await asyncio.gather(*(link.close(self.operation_timeout) for link in list(self._links)))
        self._links.clear()  # all gone (or given up on after the timeouts); none comes anew

    async def delete_queues(self) -> None:
        """Delete the jobs, dead-letter and delay queues of this namespace (tests, teardown).

        Also after ``close()``: the link is its own, closed before this returns.
        """
        link = Link(self.parameters, on_lost=lambda: None)
        try:
            await link.open(self.connect_timeout)
            names = [self.queue_name, self.dead_letter_queue_name, self.sticky_queue_name]
            names += [self.delay_queue_name(rung) for rung in LADDER_MS]
            for name in names:
                await link.rpc("queue_delete", self.operation_timeout, queue=name)
        finally:
            await link.close(self.operation_timeout)

    # ------------------------------------------------------------------ internals

    def new_link(self, *, on_lost: Callable[[], None]) -> Link:
        """A new (unopened) link, closed with the adapter; refused once the adapter is closed."""
        if self._closed:
            raise PermanentBackendError("connect: the RabbitMQ adapter is closed")
        link = Link(self.parameters, on_lost=on_lost)
        self._links.add(link)
        link.on_closed(self._links.discard)
        return link

    async def connect(self, open_link: Callable[[], Awaitable[Link]]) -> Link:
        """Open a link, retrying with backoff for up to ``connect_timeout`` seconds.

        ``open_link`` makes its link with ``new_link``: once the adapter is closed, the
        attempts end with a ``PermanentBackendError``.
        """
        deadline = asyncio.get_running_loop().time() + self.connect_timeout
        return await _with_backoff(open_link, deadline)

    async def declare(self, link: Link, queue: str) -> None:
        """Declare one of this namespace's queues (durable, with its arguments)."""
        arguments = self._queue_arguments(queue)
        await link.rpc(
            "queue_declare", self.operation_timeout, queue=queue, durable=True, arguments=arguments
        )

    def _queue_arguments(self, queue: str) -> dict[str, object] | None:
        if queue == self.queue_name and self.consumer_timeout is not None:
            return {"x-consumer-timeout": delay_ms(self.consumer_timeout)}
        if queue == self.sticky_queue_name and self.sticky_timeout is not None:
            ttl = delay_ms(self.sticky_timeout)
            return {
                "x-message-ttl": ttl,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue_name,
                "x-expires": max(60_000, 10 * ttl),  # after every message has moved on
            }
        for rung in LADDER_MS:
            if queue == self.delay_queue_name(rung):
                return {
                    "x-message-ttl": rung,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue_name,
                }
        return None

    async def _publish(
        self, queue: str, message_id: str, body: bytes, wait_ms: int, headers: _Headers
    ) -> None:
        fields = {k: v for k, v in headers.items() if k != DELAY_REST}
        if wait_ms > 0:
            rung, rest = plan_hop(wait_ms)
            queue = self.delay_queue_name(rung)
            if rest > 0:
                fields[DELAY_REST] = rest
        try:
            await self._publisher.publish(queue, message_id, body, fields)
        except TimeoutError as exc:
            raise TransientBackendError(
                f"publish: no confirm in {self.operation_timeout} s"
            ) from exc

    async def _republish(
        self, message_id: str, body: bytes, target: str, delay: float, headers: _Headers
    ) -> None:
        queue = self.dead_letter_queue_name if target == "dead" else self.queue_name
        await self._publish(queue, message_id, body, delay_ms(delay), headers)

    async def _next(self, deadline: float) -> _Incoming | None:
        """The next live buffered message before ``deadline``, sticky ones first.

        A consumer whose channel died is reconnected on the way.
        """
        loop = asyncio.get_running_loop()
        buffer = self.buffer
        while True:
            try:
                if buffer.empty():  # asyncio.timeout, not wait_for: see flowcraft.core.aio
                    async with asyncio.timeout(deadline - loop.time()):
                        _, _, item = await buffer.get()
                else:
                    _, _, item = buffer.get_nowait()
            except TimeoutError:
                return None
            if isinstance(item, _Lost):  # the channel died: reconnect and keep waiting
                await item.source.ready(item.source.prefetch)  # (not once stopped)
            elif item.generation == item.source.generation:
                return item

    def _accept(self, incoming: _Incoming) -> RabbitMqDelivery | None:
        """A delivery for the runtime, or None when the message still has a delay to wait."""
        rest = incoming.headers.get(DELAY_REST)
        if isinstance(rest, int) and rest > 0:
            task = asyncio.get_running_loop().create_task(self._hop(incoming, rest))
            self._hops.add(task)
            task.add_done_callback(self._hops.discard)
            return None
        return RabbitMqDelivery(
            message_id=incoming.message_id,
            body=incoming.body,
            delivery_count=count_deliveries(incoming.headers, incoming.redelivered),
            ack=functools.partial(incoming.source.settle, incoming.generation, incoming.tag),
            republish=functools.partial(self._republish, incoming.message_id, incoming.body),
        )

    async def _hop(self, incoming: _Incoming, rest_ms: int) -> None:
        """Send a message on for the rest of its delay, then ack it (requeue on failure)."""
        try:
            await self._publish(
                self.queue_name, incoming.message_id, incoming.body, rest_ms, incoming.headers
            )
            incoming.source.settle(incoming.generation, incoming.tag)
        except BackendError as exc:
            _log.warning("delay hop of %s failed, requeued: %s", incoming.message_id, exc)
            with contextlib.suppress(BackendError):
                incoming.source.settle(incoming.generation, incoming.tag, requeue=True)


def _parameters(value: str | pika.ConnectionParameters) -> pika.ConnectionParameters:
    if isinstance(value, str):
        with amqp_errors("parse URL"):
            parameters = pika.URLParameters(value)
    else:
        parameters = value
    parameters.connection_attempts = 1
    return parameters
