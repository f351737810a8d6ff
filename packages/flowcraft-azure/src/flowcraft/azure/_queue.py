"""``AzureQueueAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on Azure Queue Storage.

Spec sheet
----------
* Queues: one for the jobs and one for poison messages (dead letters), created by
  ``_schema.ensure_queues``. The async clients of azure-storage-queue, built without an
  encode/decode policy: the envelope (``_wire``) does its own base64.
* Capabilities: ``native_delay`` (a message's initial visibility timeout), ``max_delay`` 7 days
  (604,800 s, the service's cap; the runtime chains longer delays), ``dead_letter`` when a
  poison queue is given, no ``dedup`` (duplicates are delivered; the runtime dedupes),
  ``sticky`` unless ``sticky_delay`` is None.
* Sticky (``enqueue(sticky=True)``: the next attempts of a run the worker just decided, which
  it runs at once, ahead of their messages; bookkeeping in ``flowcraft.core.sticky``): Azure
  cannot give a dead consumer's messages to others by itself, so the message is sent to the
  jobs queue invisible for ``sticky_delay`` (30 s by default) *and* handed to this adapter's
  next ``receive`` at once (a receive waiting between polls returns it; one whose request is
  in flight returns it next). The copy is the durable one: if this worker dies, it reaches
  another consumer after ``sticky_delay`` (whose claim then waits for the dead runner's
  lease). Acking the local delivery deletes the copy at once with the pop receipt its send
  returned, so it never surfaces (a delete that fails is logged: the copy comes back later).
  A copy that comes back here after the local delivery was acked is deleted unseen
  (remembered 10 minutes); one that comes back while it is being handled joins it (deleted
  on its ack, given back on its nack, extended with it); one whose local delivery was not
  taken yet replaces it. A copy received by another consumer is an ordinary delivery there
  (the runtime's claim finds the attempt done, a duplicate, or leased: it waits). Local
  deliveries count from 1 and again after a ``nack`` (redelivered here after the delay).
  Only an adapter that receives sticks (a client's sticky enqueue is plain), not after
  ``stop_receiving`` (the local deliveries not yet taken are dropped: their copies go to
  others), and at most 1,000 local deliveries at once (past that: plain). Costs per step:
  the send and the copy's delete, as a plain message's send and ack; no receive and no
  claim. Nodes running longer than ``sticky_delay`` see their copy early (held here,
  answered BUSY elsewhere, each time a ``dequeue_count``): set ``sticky_delay`` above your
  usual node durations (at most 50 s, below the 60 s a worker remembers an attempt it ran
  ahead).
* Enqueue: ``send_message`` with ``visibility_timeout`` = ``ceil(delay)`` (never early) and
  ``time_to_live`` = -1 (never expires); durable when it returns. An envelope bigger than 56 KiB
  (64 KiB less room for a dead-letter reason) is offloaded to Cosmos DB (``_offload``) and
  travels as a reference; ``receive`` reads it back. Without an offload container such an
  enqueue raises ``PermanentBackendError`` naming the limit.
* Receive: ``receive_messages`` of up to ``min(32, max_messages)`` with the adapter's
  ``visibility_timeout``. Azure has no long polling: while the queue is empty, ``receive``
  polls again after a pause that starts at 20 ms and doubles up to ``max_poll_interval``
  (1 s by default) until ``wait`` runs out. The pause is the adapter's, kept across calls
  (a worker calling ``receive`` with a short ``wait`` in a loop polls no faster), reset by
  a poll that finds messages (the next poll comes at once if it filled the page, after the
  shortest pause if not: the queue had no more) and by an undelayed ``enqueue`` through the
  same adapter (which also wakes a waiting receive, once the adapter's other enqueues in
  flight have returned, or after 10 ms: one receive then takes a fan-out's messages
  together), so an idle worker costs about one request a second.
  ``delivery_count`` is ``dequeue_count``. A receive cancelled (or overtaken by
  ``stop_receiving``) while its request is in flight loses nothing: what the request returns
  is made visible again at once (visibility 0). A message that cannot be decoded (another
  producer, offloaded chunks gone) is delivered with its raw text as body for the worker to
  dead-letter; a failure reading offloaded bodies gives the whole batch back and raises.
* Settling (``ack``, ``nack``, ``extend`` with the new pop receipt, ``dead_letter``): see
  ``_delivery``.
* ``close()``: waits for requests in flight, makes the deliveries it handed out that are still
  unsettled visible again, then closes the clients it created itself.
* ``dead_letters()`` (tests, operators): every message of the poison queue, its id and reason,
  read to the end page by page (receive, then made visible again: peek stops at 32).
* Limits (Azure): 64 KiB of text per message, visibility and delay up to 7 days, 2,000 messages
  per second per queue (20,000 per account); a throttled request (503 ``ServerBusy``) is
  retried by the SDK's retry policy (exponential, from 0.5 s) and then leaves as
  ``TransientBackendError``.

Example::

    queue = AzureQueueAdapter(
        queue_client=QueueClient.from_connection_string(conn, "flowcraft-jobs"),
        poison_queue_client=QueueClient.from_connection_string(conn, "flowcraft-poison"),
    )
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

from flowcraft.azure._delivery import AzureDelivery
from flowcraft.azure._errors import Refused, edge
from flowcraft.azure._local import LocalQueues, Sent, went_on
from flowcraft.azure._offload import MissingBodyError, Offload
from flowcraft.azure._wire import (
    MAX_DELAY,
    MAX_TEXT,
    SIZE_MARGIN,
    Decoded,
    dead_text,
    decode,
    encode,
    encode_offloaded,
    seconds_up,
)
from flowcraft.core import ports
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.core.sticky import LocalDeliveries, sticky_delay_seconds

__all__ = ["AzureQueueAdapter"]

_log = logging.getLogger("flowcraft.azure")

#: Messages one receive request may return (the service's cap).
_PAGE = 32
#: First pause between polls of an empty queue, seconds.
_PAUSE = 0.02
#: Longest wait of a poll woken by an enqueue for the adapter's other enqueues in flight.
_GATHER = 0.01
#: Seconds ``close`` waits for requests in flight.
_CLOSE_WAIT = 30.0


class AzureQueueAdapter:
    """The job queue of one namespace on Azure Queue Storage (``ports.JobQueue``; see the module).

    Args:
        queue_client: The jobs queue's ``azure.storage.queue.aio.QueueClient``.
        poison_queue_client: The poison queue's client (None: no ``dead_letter`` capability).
        offload_container: An ``azure.cosmos.aio`` container (partition key ``/runId``) for
            bodies too big for a message; or give ``cosmos_client``, ``cosmos_database_name``
            and ``context_container_name`` (the original adapter's options) to name it.
        visibility_timeout: Seconds a received message stays invisible (1..604,800).
        max_poll_interval: The longest pause between polls of an empty queue, seconds.
        owns_clients: Close the queue clients in ``close`` (the backend shares them: False).
        sticky_delay: Seconds (1..50, rounded up) the durable copy of a sticky message stays
            invisible in the jobs queue (see "Sticky" in the module); None: no ``sticky``
            capability, the hint is ignored.
    """

    def __init__(
        self,
        *,
        queue_client: Any,  # noqa: ANN401 (azure.storage.queue.aio.QueueClient)
        poison_queue_client: Any = None,  # noqa: ANN401
        offload_container: Any = None,  # noqa: ANN401 (azure.cosmos.aio.ContainerProxy)
        cosmos_client: Any = None,  # noqa: ANN401 (azure.cosmos.aio.CosmosClient)
        cosmos_database_name: str | None = None,
        context_container_name: str | None = None,
        visibility_timeout: int = 30,
        max_poll_interval: float = 1.0,
        owns_clients: bool = False,
        sticky_delay: float | None = 30.0,
    ) -> None:
        if not 1 <= visibility_timeout <= MAX_DELAY:
            raise ValueError(f"visibility_timeout {visibility_timeout} is outside 1..{MAX_DELAY}")
        if max_poll_interval <= 0:
            raise ValueError(f"max_poll_interval must be positive, got {max_poll_interval}")
        if offload_container is None and cosmos_client is not None:
            if not (cosmos_database_name and context_container_name):
                raise TypeError(
                    "cosmos_client needs cosmos_database_name and context_container_name"
                )
            database = cosmos_client.get_database_client(cosmos_database_name)
            offload_container = database.get_container_client(context_container_name)
        self.queue_client = queue_client
        self.poison_queue_client = poison_queue_client
        self.visibility_timeout = visibility_timeout
        self.max_poll_interval = max_poll_interval
        self._owns = owns_clients
        self._offload = Offload(offload_container) if offload_container is not None else None
        self.sticky_delay = sticky_delay_seconds(sticky_delay)
        self._caps = ports.QueueCapabilities(
            native_delay=True,
            max_delay=float(MAX_DELAY),
            dead_letter=poison_queue_client is not None,
            dedup=False,
            sticky=self.sticky_delay is not None,
        )
        queues = LocalQueues(queue_client, poison_queue_client, self._offloaded)
        self._local: LocalDeliveries[AzureDelivery] = LocalDeliveries(
            check_open=self._check_open, wake=self._wake_up, stale=went_on,
            send_dead=queues.send_dead, forget=self.forget, drop_sent=queues.delete_sent,
        )  # fmt: skip
        self._unsettled: dict[int, AzureDelivery] = {}
        self._polls: set[asyncio.Task[list[AzureDelivery]]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._pause = _PAUSE
        self._next_poll = 0.0
        self._sending = 0  # enqueues in flight
        self._due = False  # an enqueue made a message visible; the receive not woken yet
        self._stopped = False
        self._closed = False

    @property
    def capabilities(self) -> ports.QueueCapabilities:
        """What this queue can do (see the module)."""
        return self._caps

    # ------------------------------------------------------------------ enqueue

    async def enqueue(
        self, message: ports.Message, *, delay: float = 0.0, sticky: bool = False
    ) -> None:
        """Durably enqueue ``message``, deliverable after ``delay`` seconds (rounded up).

        ``sticky`` (with a ``sticky_delay``, on an adapter that receives, ``delay`` 0): the
        message goes to the jobs queue invisible for ``sticky_delay`` and to this adapter's
        next ``receive`` at once (see "Sticky" in the module). Otherwise a plain enqueue.

        Raises:
            ValueError: ``delay`` above 7 days, or an empty message id.
            PermanentBackendError: the body is too big and there is no offload container, or
                the service refused the message; also after ``close``.
            TransientBackendError: the service failed; retrying may succeed.
        """
        seconds = seconds_up(delay, "delay")
        self._check_open("enqueue")
        home = sticky and not seconds and self._sticks()
        if home:
            assert self.sticky_delay is not None
            seconds = self.sticky_delay
        text = encode(message.id, message.body)
        if len(text) > MAX_TEXT - SIZE_MARGIN:
            text = await self._offloaded(message, len(text))
        self._sending += 1
        try:
            with edge(f"enqueue {message.id}"):
                sent = await self.queue_client.send_message(
                    text, visibility_timeout=seconds or None, time_to_live=-1
                )
        finally:
            self._sending -= 1
        if home:
            self._local.add(
                message.id, message.body, sent=Sent(str(sent.id), str(sent.pop_receipt))
            )
        self._woken(due=not seconds)

    def _sticks(self) -> bool:
        """Whether a sticky enqueue goes to this adapter's own consumer now."""
        return self.sticky_delay is not None and self._local.accepts

    async def _offloaded(self, message: ports.Message, size: int) -> str:
        if self._offload is None:
            raise PermanentBackendError(
                f"enqueue {message.id}: the message takes {size} characters, over the limit "
                f"of {MAX_TEXT - SIZE_MARGIN} (64 KiB less {SIZE_MARGIN} kept free); give the "
                "adapter an offload container to keep large bodies in Cosmos DB"
            )
        key, count = await self._offload.store(message.body)
        return encode_offloaded(message.id, key, count)

    # ------------------------------------------------------------------ receive

    async def receive(self, max_messages: int, wait: float) -> Sequence[ports.Delivery]:
        """Up to ``max_messages`` deliveries, polling with backoff for up to ``wait`` seconds.

        The backoff belongs to the adapter, not to one call: after an empty poll the next
        request waits for the pause (20 ms doubling up to ``max_poll_interval``), however
        short each call's ``wait`` is, so a worker that calls ``receive`` in a tight loop
        with a short ``wait`` does not poll faster. A poll that finds messages, or an
        ``enqueue`` through this adapter (its sender has just made work), resets the pause
        and wakes a waiting receive. ``wait`` <= 0 always polls once.
        """
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self._local.receiving()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait)
        if wait <= 0:
            self._next_poll = 0.0
        while not self._stopped:
            local = self._local.home.take(min(_PAGE, max_messages))
            if local:  # sticky messages of this adapter: no request
                return local
            early = self._next_poll - loop.time()
            if early > 0:
                left = deadline - loop.time()
                if left <= 0:
                    return []
                await asyncio.wait((self._stopping(), self._waking()), timeout=min(early, left))
                continue
            asked = min(_PAGE, max_messages)
            fetched = await self._receive_once(asked)
            if fetched:  # fewer than asked: the queue had no more, so the next poll pauses
                self._pause = _PAUSE
                self._next_poll = 0.0 if len(fetched) >= asked else loop.time() + _PAUSE
                got = self._admit(fetched)
                got += self._local.home.take(asked - len(got))
                if got:
                    return got
                if loop.time() >= deadline:  # only copies of local deliveries came
                    return []
                continue
            self._next_poll = loop.time() + self._pause
            self._pause = min(self._pause * 2, self.max_poll_interval)
            if loop.time() >= deadline:
                return []
        return []

    def _waking(self) -> asyncio.Future[None]:
        """A future done when this adapter enqueues next (work may be waiting)."""
        if self._wake is None or self._wake.done():
            self._wake = asyncio.get_running_loop().create_future()
        return self._wake

    def _woken(self, *, due: bool) -> None:
        """An enqueue returned (``due``: its message is visible now): poll soon.

        While other enqueues of this adapter are in flight (a decision's messages are sent
        together), the poll waits for them, at most ``_GATHER`` seconds, so that one receive
        takes them all; the last one to return makes it poll at once.
        """
        if due:
            self._due = True
        if not self._due:
            return
        loop = asyncio.get_running_loop()
        self._pause = _PAUSE
        if self._sending:
            self._next_poll = min(self._next_poll, loop.time() + _GATHER)
        else:
            self._due, self._next_poll = False, 0.0
        self._wake_up()

    def _wake_up(self) -> None:
        """Wake a receive waiting between polls (work may be waiting)."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _receive_once(self, count: int) -> list[AzureDelivery]:
        """One receive request; what it brings goes back if nobody takes it."""
        task = asyncio.get_running_loop().create_task(self._fetch(count))
        self._polls.add(task)
        task.add_done_callback(self._polls.discard)
        try:
            await asyncio.wait((task, self._stopping()), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.add_done_callback(self._give_back)
            raise
        if not task.done():  # stop_receiving: its messages go back when the request returns
            task.add_done_callback(self._give_back)
            return []
        return task.result()

    def _admit(self, fetched: list[AzureDelivery]) -> list[ports.Delivery]:
        """The deliveries of what a request brought, less copies of local deliveries.

        A copy is settled as ``Home.arrived`` says: a finished one is deleted unseen, one
        whose local delivery is out joins it; the rest are delivered.
        """
        got: list[ports.Delivery] = []
        for delivery in fetched:
            fate = self._local.arrived(delivery)
            if fate == "done":
                self._spawn(self._drop_copy(delivery))
                continue
            self._unsettled[id(delivery)] = delivery
            if fate == "deliver":
                got.append(delivery)
        return got

    async def _drop_copy(self, copy: AzureDelivery) -> None:
        try:
            await copy.ack()
        except BackendError as exc:  # it comes back, and is dropped again
            _log.debug("could not delete the copy of a finished sticky message: %s", exc)

    async def _fetch(self, count: int) -> list[AzureDelivery]:
        messages: list[Any] = []
        with edge("receive"):
            pager = self.queue_client.receive_messages(
                messages_per_page=count, max_messages=count,
                visibility_timeout=self.visibility_timeout,
            )  # fmt: skip
            async for page in pager.by_page():
                messages = [m async for m in page]
                break
        try:
            return list(await asyncio.gather(*(self._read(m) for m in messages)))
        except BaseException:
            await self._release((m.id, m.pop_receipt) for m in messages)
            raise

    async def _read(self, message: Any) -> AzureDelivery:  # noqa: ANN401 (a QueueMessage)
        text = str(message.content or "")
        decoded = decode(text, str(message.id))
        if decoded.offload is not None:
            decoded = await self._fetch_body(decoded, *decoded.offload)
        if decoded.problem is not None:
            _log.warning("message %s cannot be decoded: %s", decoded.message_id, decoded.problem)
        return AzureDelivery(
            message_id=decoded.message_id, body=decoded.body,
            delivery_count=max(1, int(message.dequeue_count or 1)), azure_id=str(message.id),
            pop_receipt=str(message.pop_receipt), text=text, settler=self,
        )  # fmt: skip

    async def _fetch_body(self, decoded: Decoded, key: str, count: int) -> Decoded:
        message_id = decoded.message_id
        if self._offload is None:
            problem = f"its body was offloaded to {key}, but the adapter has no offload container"
            raise PermanentBackendError(f"receive {message_id}: {problem}")
        try:
            body = await self._offload.fetch(key, count)
        except MissingBodyError as exc:
            return Decoded(message_id=message_id, body=key.encode(), problem=str(exc))
        return Decoded(message_id=message_id, body=body)

    def _give_back(self, task: asyncio.Task[list[AzureDelivery]]) -> None:
        """Make what an abandoned receive returned visible again (its errors: logged)."""
        if task.cancelled():
            return
        if task.exception() is not None:  # _fetch released what it had
            _log.debug("abandoned receive failed: %s", task.exception())
            return
        handles = [(d.azure_id, d.pop_receipt) for d in task.result()]
        if handles:
            self._spawn(self._release(handles))

    def _stopping(self) -> asyncio.Future[None]:
        """A future done once ``stop_receiving`` was called."""
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
            if self._stopped:
                self._stop.set_result(None)
        return self._stop

    async def stop_receiving(self) -> None:
        """Receive nothing more: in-flight and later receives return ``[]``. Idempotent.

        Nothing is fetched ahead; what an in-flight request brings goes back when it returns.
        Deliveries already returned stay settleable until ``close``.
        """
        self._stopped = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        self._local.stop()  # the local deliveries not out: their copies go to whoever receives

    # ------------------------------------------------------------------ settling (Settler)

    async def settle_ack(self, delivery: AzureDelivery) -> None:
        """Delete ``delivery``'s message (a stale pop receipt is fine)."""
        self._check_open("ack")
        try:
            with edge(f"ack {delivery.message_id}"):
                await self.queue_client.delete_message(delivery.azure_id, delivery.pop_receipt)
        except Refused:
            _log.debug("ack %s: stale pop receipt (delivered again)", delivery.message_id)

    async def settle_visibility(
        self, delivery: AzureDelivery, seconds: float, *, nack: bool
    ) -> None:
        """Make ``delivery``'s message visible in ``seconds`` (``nack``: stale is fine)."""
        what = "nack" if nack else "extend"
        self._check_open(what)
        timeout = seconds_up(min(float(seconds), MAX_DELAY), f"{what} seconds")
        try:
            with edge(f"{what} {delivery.message_id}"):
                updated = await self.queue_client.update_message(
                    delivery.azure_id, delivery.pop_receipt, visibility_timeout=timeout
                )
        except Refused as refused:
            if not nack:
                raise TransientBackendError(
                    f"extend {delivery.message_id}: the delivery is stale ({refused}); the "
                    "message was delivered again"
                ) from refused
            _log.debug("nack %s: stale pop receipt (delivered again)", delivery.message_id)
            return
        delivery.pop_receipt = str(updated.pop_receipt)

    async def settle_dead(self, delivery: AzureDelivery, reason: str) -> None:
        """Copy the message to the poison queue with ``reason``, then delete it."""
        self._check_open("dead_letter")
        if self.poison_queue_client is None:
            _log.error("message %s: no poison queue; hidden for %d s instead: %s",
                       delivery.message_id, MAX_DELAY, reason)  # fmt: skip
            await self.settle_visibility(delivery, MAX_DELAY, nack=True)
            return
        text = dead_text(delivery.text, delivery.message_id, reason)
        with edge(f"dead-letter {delivery.message_id}"):
            await self.poison_queue_client.send_message(text, time_to_live=-1)
        await self.settle_ack(delivery)

    def forget(self, delivery: AzureDelivery) -> None:
        """``delivery`` is settled: ``close`` does not give it back."""
        self._unsettled.pop(id(delivery), None)

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Give back unsettled deliveries, finish requests in flight, close owned clients.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        await self.stop_receiving()
        if self._polls:
            await asyncio.wait(set(self._polls), timeout=_CLOSE_WAIT)
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        unsettled, self._unsettled = self._unsettled, {}
        await self._release((d.azure_id, d.pop_receipt) for d in unsettled.values())
        if self._owns:
            await self.queue_client.close()
            if self.poison_queue_client is not None:
                await self.poison_queue_client.close()

    async def dead_letters(self) -> list[tuple[str, str]]:
        """``(message id, reason)`` of every message of the poison queue, left in place.

        Azure's peek returns at most 32 messages and cannot page, so the poison queue is read
        to its end by receiving it page by page (each page hidden for a minute, so the next
        receive returns new messages), then every message read is made visible again. A
        message received meanwhile by someone else is missed, not lost.
        """
        if self.poison_queue_client is None:
            return []
        found: dict[str, Any] = {}
        try:
            while True:
                with edge("read poison queue"):
                    pager = self.poison_queue_client.receive_messages(
                        messages_per_page=_PAGE, max_messages=_PAGE, visibility_timeout=60
                    )
                    page = [m async for m in pager]
                found |= {str(m.id): m for m in page}
                if len(page) < _PAGE:
                    break
        finally:
            await self._release(
                ((str(m.id), str(m.pop_receipt)) for m in found.values()),
                client=self.poison_queue_client,
            )
        letters = []
        for message in sorted(found.values(), key=lambda m: m.inserted_on or 0):
            decoded = decode(str(message.content or ""), str(message.id))
            letters.append((decoded.message_id, decoded.reason or decoded.problem or ""))
        return letters

    # ------------------------------------------------------------------ internals

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise TransientBackendError(
                f"{what}: the Azure queue adapter is closed (its unsettled messages were made "
                "visible again)"
            )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task that ``close`` waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, handles: Iterable[tuple[str, str]], client: Any = None) -> None:  # noqa: ANN401
        """Make these messages of ``client``'s queue (the jobs queue) visible at once.

        Failures are logged, never raised.
        """
        queue = client if client is not None else self.queue_client

        async def one(azure_id: str, pop_receipt: str) -> None:
            try:
                with edge("release"):
                    await queue.update_message(azure_id, pop_receipt, visibility_timeout=0)
            except (Refused, TransientBackendError, PermanentBackendError) as exc:
                _log.debug("could not make message %s visible again: %s", azure_id, exc)

        await asyncio.gather(*(one(*handle) for handle in handles))
