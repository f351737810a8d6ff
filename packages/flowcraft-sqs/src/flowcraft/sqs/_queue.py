"""``SqsAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on Amazon SQS.

Spec sheet
----------
* Queues: one SQS standard queue for the jobs, optionally one for dead letters (both created
  by ``_schema.ensure_queues``: the jobs queue's ``VisibilityTimeout`` and redrive policy
  (``maxReceiveCount``) are queue attributes set there; ``visibility_timeout`` here is
  informational). Calls run in ``Aws``'s thread pools (long polls in their own).
* Capabilities: ``native_delay`` (``DelaySeconds``), ``max_delay`` 900 s (SQS's cap; the
  runtime chains longer delays), ``dead_letter`` when a dead-letter queue URL is given, no
  ``dedup`` (standard queues deliver duplicates; the runtime dedupes), ``sticky`` unless
  ``sticky_delay`` is None.
* Sticky (``enqueue(sticky=True)``: the next attempts of a run the worker just decided, which
  it runs at once, ahead of their messages): SQS cannot give a dead consumer's messages to
  others by itself, so the message is sent to the jobs queue with ``DelaySeconds`` =
  ``sticky_delay`` (30 s by default) *and* handed to this adapter's next ``receive`` at once
  (a receive waiting on SQS returns it; its call in flight is adopted by the next receive).
  The delayed copy is the durable one: if this worker dies, it reaches another consumer
  after ``sticky_delay`` (whose claim then waits for the dead runner's lease). A copy that
  comes back here after the local delivery was acked is deleted unseen (remembered 10
  minutes); one that comes back while it is being handled joins it (deleted on its ack,
  given back on its nack, extended with it); one whose local delivery was not taken yet
  replaces it. A copy received by another consumer is an ordinary delivery there: the
  runtime's claim finds the attempt done (a duplicate) or leased (it waits). Local
  deliveries count from 1 and again after a ``nack`` (redelivered here after the delay).
  Only an adapter that receives sticks (a client's sticky enqueue is plain), not after
  ``stop_receiving`` (the local deliveries not yet taken are dropped: their copies go to
  others), and at most 1,000 local deliveries at once (past that: plain). Costs: one
  ``ReceiveMessage`` share and one ``DeleteMessageBatch`` share per step for the copy; a copy
  received by another worker (with N workers, about (N-1)/N of them) costs that worker a
  claim and a re-decide of the run. Nodes running longer than ``sticky_delay`` see their
  copy early: here it is held (for a visibility timeout at a time), elsewhere it is answered
  BUSY until the attempt is done, each time counting a receive (``ApproximateReceiveCount``):
  set ``sticky_delay`` above your usual node durations (at most 50 s, below the 60 s a
  worker remembers an attempt it ran ahead).
* Wire format (bodies as UTF-8 text or base64, the id and the rest in message attributes,
  sizes): see ``_codec``.
* Enqueue: ``DelaySeconds`` = ``ceil(delay)`` (never early; ``ValueError`` above 900 s).
  Enqueues of the same event-loop turn go out together as ``SendMessageBatch`` requests of
  at most 10 entries and ``max_message_bytes`` in all (25 concurrent enqueues: 3 requests);
  each caller waits for its own entry and gets its own error (``PermanentBackendError`` when
  SQS says the sender is at fault, else ``TransientBackendError``; a batch refused as a whole
  is sent again message by message, so one bad message fails alone). ``enqueue`` returns once
  SQS has stored the message (durable).
* Large bodies: a message bigger than ``max_message_bytes`` less 8 KiB (kept for the
  dead-letter reason) is offloaded to the DynamoDB table ``offload_table_name`` (see
  ``_offload``: chunks of 350,000 bytes, kept 15 days) and travels as a pointer; ``receive``
  reads it back, so the consumer sees the original body. Offloaded items are *not* deleted
  on ack: a duplicate delivery still in flight may need them; they expire through the
  table's TTL on ``expires_at`` (where TTL is enabled on that attribute). Without an
  offload table, such an enqueue raises ``PermanentBackendError`` naming the limit.
* Receive: ``ReceiveMessage`` with ``MaxNumberOfMessages`` = ``min(10, max_messages)`` and
  ``WaitTimeSeconds`` = ``min(20, int(wait))`` (a long poll); for less than a second left,
  short polls with a backoff sleep (20 ms doubling to 250 ms) until the deadline.
  ``delivery_count`` is ``ApproximateReceiveCount``. Nothing is fetched ahead. A receive
  cancelled while its call is in flight (or overtaken by ``stop_receiving``) loses nothing:
  what that call returns is made visible again at once (``ChangeMessageVisibilityBatch`` to
  0), not after a visibility timeout. A message that cannot be decoded (a foreign producer,
  an offloaded body whose chunks are gone) is delivered with its raw text as body, for the
  worker to dead-letter; a failure reading offloaded bodies gives the whole batch back and
  raises.
* Settling (``ack`` batched into ``DeleteMessageBatch``, ``nack``, ``extend``,
  ``dead_letter``): see ``_delivery``.
* ``stop_receiving()``: in-flight receives return ``[]`` at once (what their call brings back
  goes back to the queue) and later ones too; deliveries already returned stay settleable.
* ``close()``: waits for calls in flight (a long poll at most 20 s), makes the deliveries it
  handed out that are still unsettled visible again (batched), then closes the ``Aws`` if it
  created it. Enqueues and settlements after ``close`` raise.
* ``dead_letters()`` (tests, operators): peeks at the dead-letter queue: every message's id
  and reason, left in place.
* Limits (SQS): messages (and batches) of ``max_message_bytes``, 256 KiB by default (SQS
  takes up to 1 MiB since 2025 where the queue's ``MaximumMessageSize`` says so: set both),
  delays up to 15 minutes, visibility up to 12 hours after a receive, 120,000 in-flight
  messages per queue, retention 14 days (``_schema``).

Example::

    aws = Aws(endpoint_url="http://127.0.0.1:15000")
    jobs, dead = await ensure_queues(aws, Names.of("prod"), visibility_timeout=30,
                                     max_receive_count=10)
    queue = SqsAdapter(queue_url=jobs, dead_letter_queue_url=dead,
                       offload_table_name="prod-contexts", aws=aws)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.core import ports
from flowcraft.core.aio import TurnBatch
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.core.sticky import LocalDeliveries, LocalDelivery, sticky_delay_seconds
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._batch import Errors, batcher, entry_errors, stale_error
from flowcraft.sqs._codec import (
    BATCH_ENTRIES,
    ID,
    MAX_DELAY,
    MAX_VISIBILITY,
    REASON,
    SIZE_MARGIN,
    Decoded,
    Encoded,
    clean_attributes,
    decode,
    delay_seconds,
    encode,
    encode_offloaded,
    pack,
    reason_attribute,
    visibility_seconds,
)
from flowcraft.sqs._delivery import SqsDelivery
from flowcraft.sqs._offload import MissingBodyError, Offload
from flowcraft.sqs._schema import drop_queues

__all__ = ["SqsAdapter"]

_log = logging.getLogger("flowcraft.sqs")

#: SQS's longest long poll, seconds.
_LONG_POLL = 20
#: Backoff between short polls: first and longest pause, seconds.
_PAUSE, _MAX_PAUSE = 0.02, 0.25
#: Seconds ``dead_letters`` keeps the messages it peeks at invisible.
_PEEK_SECONDS = 30
#: Seconds ``close`` waits for receive calls in flight (a long poll, plus slack).
_CLOSE_WAIT = 25.0
#: The reason of a message the redrive policy moved to the dead-letter queue.
REDRIVE_REASON = "received more than the redrive policy's maxReceiveCount times"
_RECEIVE = {
    "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
    "MessageAttributeNames": ["All"],
}


@dataclass(frozen=True, slots=True)
class _Send:
    """One message of a SendMessageBatch."""

    encoded: Encoded
    delay: int


@dataclass(frozen=True, slots=True)
class _Received:
    """A received message, decoded, before it becomes a delivery."""

    decoded: Decoded
    count: int
    receipt_handle: str
    wire_body: str
    wire_attributes: dict[str, dict[str, Any]]


class SqsAdapter:
    """The job queue of one namespace on SQS (implements ``ports.JobQueue``; see the module).

    Args:
        queue_url: The jobs queue.
        dead_letter_queue_url: The dead-letter queue (None: no ``dead_letter`` capability).
        offload_table_name: DynamoDB table (key ``runId`` + ``sk``) for bodies too big for
            SQS; None: such an enqueue raises ``PermanentBackendError``.
        aws: Clients and executors to share (the caller closes it). Without it, one is made
            from ``sqs_client``, ``dynamodb_client``, ``endpoint_url`` and ``region`` and
            closed by ``close``.
        sqs_client: A boto3 SQS client (when ``aws`` is not given).
        dynamodb_client: A boto3 DynamoDB client (when ``aws`` is not given).
        endpoint_url: An endpoint for both services (an emulator), when ``aws`` is not given.
        region: The AWS region, when ``aws`` is not given.
        visibility_timeout: The jobs queue's visibility timeout, seconds (informational: the
            queue attribute set by ``ensure_queues`` is what counts).
        max_message_bytes: SQS's message size limit of the queue (and of one batch).
        sticky_delay: Seconds (1..50, rounded up) the durable copy of a sticky message waits
            in the jobs queue before any consumer may receive it (see "Sticky" in the
            module); None: no ``sticky`` capability, the hint is ignored.
    """

    def __init__(
        self,
        *,
        queue_url: str,
        dead_letter_queue_url: str | None = None,
        offload_table_name: str | None = None,
        aws: Aws | None = None,
        sqs_client: Any = None,  # noqa: ANN401 (a boto3 client)
        dynamodb_client: Any = None,  # noqa: ANN401
        endpoint_url: str | None = None,
        region: str | None = None,
        visibility_timeout: int = 30,
        max_message_bytes: int = 262_144,
        sticky_delay: float | None = 30.0,
    ) -> None:
        if aws is not None and (sqs_client or dynamodb_client or endpoint_url or region):
            raise TypeError("pass either aws or clients/endpoint_url/region, not both")
        if max_message_bytes <= 2 * SIZE_MARGIN:
            raise ValueError(f"max_message_bytes must be above {2 * SIZE_MARGIN}")
        self._owns_aws = aws is None
        self._aws = aws or Aws(
            sqs_client=sqs_client,
            dynamodb_client=dynamodb_client,
            endpoint_url=endpoint_url,
            region=region,
        )
        self.queue_url = queue_url
        self.dead_letter_queue_url = dead_letter_queue_url
        self.visibility_timeout = visibility_timeout
        self.max_message_bytes = max_message_bytes
        self._offload = Offload(self._aws, offload_table_name) if offload_table_name else None
        self.sticky_delay = sticky_delay_seconds(sticky_delay)
        self._caps = ports.QueueCapabilities(
            native_delay=True,
            max_delay=float(MAX_DELAY),
            dead_letter=dead_letter_queue_url is not None,
            dedup=False,
            sticky=self.sticky_delay is not None,
        )
        self._local: LocalDeliveries[SqsDelivery] = LocalDeliveries(
            check_open=self._check_open, wake=self._wake_up, stale=_went_on,
            send_dead=self._send_dead,
        )  # fmt: skip
        self._wake: asyncio.Future[None] | None = None  # a local delivery is ready
        self._poll: asyncio.Task[list[_Received]] | None = None  # a receive call to adopt
        self._sends: TurnBatch[_Send, None] = batcher(
            self._send_batch,
            size=lambda s: s.encoded.size,
            limit=max_message_bytes,
            spawn=self._spawn,
        )
        self._deletes: TurnBatch[str, None] = batcher(
            self._delete_batch, size=lambda _: 0, limit=max_message_bytes, spawn=self._spawn
        )
        self._unsettled: dict[str, SqsDelivery] = {}
        self._polls: set[asyncio.Task[list[_Received]]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Future[None] | None = None
        self._stopped = False
        self._closed = False

    @property
    def capabilities(self) -> ports.QueueCapabilities:
        """What this queue can do (see the module)."""
        return self._caps

    @property
    def aws(self) -> Aws:
        """The clients and executors this adapter calls through."""
        return self._aws

    # ------------------------------------------------------------------ enqueue

    async def enqueue(
        self, message: ports.Message, *, delay: float = 0.0, sticky: bool = False
    ) -> None:
        """Durably enqueue ``message`` (batched with this turn's others), after ``delay`` s.

        ``sticky`` (with a ``sticky_delay``, on an adapter that receives): the message goes
        to the jobs queue delayed by ``sticky_delay`` and to this adapter's next ``receive``
        at once (see "Sticky" in the module). Otherwise, and for a delayed message, a plain
        enqueue.

        Raises:
            ValueError: ``delay`` above 900 s, or a message id SQS cannot carry.
            PermanentBackendError: the body is too big and there is no offload table, or
                SQS refused the message; also after ``close``.
            TransientBackendError: SQS or DynamoDB failed; retrying may succeed.
        """
        seconds = delay_seconds(delay, MAX_DELAY)
        self._check_open("enqueue")
        home = sticky and seconds == 0 and self._sticks()
        if home:
            assert self.sticky_delay is not None
            seconds = self.sticky_delay
        encoded = encode(message.id, message.body)
        if encoded.size > self.max_message_bytes - SIZE_MARGIN:
            encoded = await self._offloaded(message, encoded.size)
        await self._sends.submit(_Send(encoded, seconds))
        if home:
            self._local.add(message.id, message.body)

    def _sticks(self) -> bool:
        """Whether a sticky enqueue goes to this adapter's own consumer now."""
        return self.sticky_delay is not None and self._local.accepts

    async def _offloaded(self, message: ports.Message, size: int) -> Encoded:
        if self._offload is None:
            raise PermanentBackendError(
                f"enqueue {message.id}: the message takes {size} bytes on SQS, over the limit "
                f"of {self.max_message_bytes - SIZE_MARGIN} (max_message_bytes "
                f"{self.max_message_bytes} less {SIZE_MARGIN} kept free); pass "
                "offload_table_name to keep large bodies in DynamoDB"
            )
        key, count = await self._offload.store(message.id, message.body)
        return encode_offloaded(message.id, key, count)

    async def _send_batch(self, sends: list[_Send]) -> Errors:
        entries = [
            {
                "Id": str(index),
                "MessageBody": send.encoded.body,
                "MessageAttributes": send.encoded.attributes,
                "DelaySeconds": send.delay,
            }
            for index, send in enumerate(sends)
        ]
        try:
            answer = await self._aws.sqs(
                "send_message_batch", QueueUrl=self.queue_url, Entries=entries
            )
        except PermanentBackendError:
            if len(sends) == 1:
                raise
            return list(await asyncio.gather(*(self._send_one(send) for send in sends)))
        return entry_errors(answer, len(entries), "send_message_batch", stale_ok=False)

    async def _send_one(self, send: _Send) -> BaseException | None:
        """One message on its own (a batch that SQS refused as a whole)."""
        try:
            await self._aws.sqs(
                "send_message",
                QueueUrl=self.queue_url,
                MessageBody=send.encoded.body,
                MessageAttributes=send.encoded.attributes,
                DelaySeconds=send.delay,
            )
        except BackendError as exc:
            return exc
        return None

    # ------------------------------------------------------------------ receive

    async def receive(self, max_messages: int, wait: float) -> Sequence[ports.Delivery]:
        """Up to ``max_messages`` (10 at most) deliveries, waiting up to ``wait`` seconds."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self._local.receiving()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait)
        pause, left = _PAUSE, max(0.0, wait)
        while not self._stopped:
            seconds = min(_LONG_POLL, int(left)) if left >= 1 else 0
            got = await self._receive_once(min(BATCH_ENTRIES, max_messages), seconds)
            left = deadline - loop.time()
            if got or left <= 0:
                return got
            if seconds == 0:
                await asyncio.wait((self._stopping(),), timeout=min(pause, left))
                pause = min(pause * 2, _MAX_PAUSE)
        return []

    async def _receive_once(self, count: int, seconds: int) -> list[ports.Delivery]:
        """Local deliveries, else one ``ReceiveMessage`` (what nobody takes goes back).

        A local delivery made ready meanwhile returns at once; the call in flight is then
        adopted by the next receive.
        """
        local = self._local.home.take(count)
        if local:
            return list(local)
        loop = asyncio.get_running_loop()
        task, self._poll = self._poll, None
        if task is None:
            task = loop.create_task(self._fetch(count, seconds))
            self._polls.add(task)
            task.add_done_callback(self._polls.discard)
        self._wake = loop.create_future()
        try:
            await asyncio.wait(
                (task, self._stopping(), self._wake), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            task.add_done_callback(self._give_back)
            raise
        if not task.done():
            if self._stopped:  # its messages go back when the call returns
                task.add_done_callback(self._give_back)
                return []
            self._poll = task  # woken by a local delivery
            return list(self._local.home.take(count))
        got: list[ports.Delivery] = list(self._local.home.take(count))
        extra: list[str] = []
        for received in task.result():
            if len(got) >= count:  # an adopted call for more than asked now
                extra.append(received.receipt_handle)
            elif (delivery := self._deliver(received)) is not None:
                got.append(delivery)
        if extra:
            self._spawn(self._release(extra, self.queue_url))
        return got

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _fetch(self, count: int, seconds: int) -> list[_Received]:
        answer = await self._aws.poll(
            "receive_message",
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=seconds,
            **_RECEIVE,
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        try:
            return list(await asyncio.gather(*(self._read(m) for m in messages)))
        except BaseException:
            await self._release([str(m["ReceiptHandle"]) for m in messages], self.queue_url)
            raise

    async def _read(self, message: dict[str, Any]) -> _Received:
        decoded = decode(message)
        if decoded.offload is not None:
            decoded = await self._fetch_body(decoded, *decoded.offload)
        if decoded.problem is not None:
            _log.warning("message %s cannot be decoded: %s", decoded.message_id, decoded.problem)
        count = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        return _Received(
            decoded=decoded,
            count=max(1, int(count)),
            receipt_handle=str(message["ReceiptHandle"]),
            wire_body=str(message["Body"]),
            wire_attributes=clean_attributes(message.get("MessageAttributes") or {}),
        )

    async def _fetch_body(self, decoded: Decoded, key: str, count: int) -> Decoded:
        message_id = decoded.message_id
        if self._offload is None:
            problem = f"its body was offloaded to {key}, but no offload_table_name is set"
            raise PermanentBackendError(f"receive {message_id}: {problem}")
        try:
            body = await self._offload.fetch(key, count)
        except MissingBodyError as exc:
            return Decoded(message_id=message_id, body=key.encode(), problem=str(exc))
        return Decoded(message_id=message_id, body=body)

    def _deliver(self, received: _Received) -> SqsDelivery | None:
        """The delivery of a received message (None: a copy of a local one, see core.sticky)."""
        delivery = SqsDelivery(
            message_id=received.decoded.message_id,
            body=received.decoded.body,
            delivery_count=received.count,
            receipt_handle=received.receipt_handle,
            received_at=time.monotonic(),
            wire_body=received.wire_body,
            wire_attributes=received.wire_attributes,
            settler=self,
        )
        fate = self._local.arrived(delivery)
        if fate == "done":  # finished work: delete it
            self._spawn(self._drop_copy(received.receipt_handle))
            return None
        self._unsettled[received.receipt_handle] = delivery
        return delivery if fate == "deliver" else None

    async def _drop_copy(self, handle: str) -> None:
        try:
            await self._deletes.submit(handle)
        except BackendError as exc:  # it comes back, and is dropped again
            _log.debug("could not delete the copy of a finished sticky message: %s", exc)

    def _give_back(self, task: asyncio.Task[list[_Received]]) -> None:
        """Make what an abandoned receive call returned visible again (its errors: logged)."""
        if task.cancelled():
            return
        if task.exception() is not None:  # _fetch released what it had
            _log.debug("abandoned receive failed: %s", task.exception())
            return
        handles = [received.receipt_handle for received in task.result()]
        if handles:
            self._spawn(self._release(handles, self.queue_url))

    def _stopping(self) -> asyncio.Future[None]:
        """A future done once ``stop_receiving`` was called."""
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
            if self._stopped:
                self._stop.set_result(None)
        return self._stop

    async def stop_receiving(self) -> None:
        """Receive nothing more: in-flight and later receives return ``[]``. Idempotent.

        Nothing is fetched ahead, so nothing waits to go back but what an in-flight receive
        call brings (it goes back when the call returns). Deliveries already returned stay
        settleable until ``close``.
        """
        self._stopped = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        if self._poll is not None:
            self._poll.add_done_callback(self._give_back)
            self._poll = None
        self._local.stop()  # the local deliveries not out: their copies go to whoever receives

    # ------------------------------------------------------------------ settling (Settler)

    async def settle_ack(self, delivery: SqsDelivery) -> None:
        """Delete ``delivery``'s message (batched; a stale receipt handle is fine)."""
        self._check_open("ack")
        await self._deletes.submit(delivery.receipt_handle)

    async def _delete_batch(self, handles: list[str]) -> Errors:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        answer = await self._aws.sqs(
            "delete_message_batch", QueueUrl=self.queue_url, Entries=entries
        )
        return entry_errors(answer, len(entries), "delete_message_batch", stale_ok=True)

    async def settle_visibility(self, delivery: SqsDelivery, seconds: float, *, nack: bool) -> None:
        """Make ``delivery``'s message visible in ``seconds`` (``nack``: stale is fine)."""
        self._check_open("nack" if nack else "extend")
        try:
            await self._aws.sqs(
                "change_message_visibility",
                QueueUrl=self.queue_url,
                ReceiptHandle=delivery.receipt_handle,
                VisibilityTimeout=_visibility_left(delivery, seconds),
            )
        except PermanentBackendError as exc:
            if not (nack and stale_error(exc)):
                raise
            _log.debug("nack %s: stale receipt handle (already redelivered)", delivery.message_id)

    async def settle_dead(self, delivery: SqsDelivery, reason: str) -> None:
        """Copy the message to the dead-letter queue with ``reason``, then delete it."""
        self._check_open("dead_letter")
        if self.dead_letter_queue_url is None:
            _log.error(
                "message %s: no dead-letter queue; hidden for %d s instead: %s",
                delivery.message_id,
                MAX_VISIBILITY,
                reason,
            )
            await self.settle_visibility(delivery, MAX_VISIBILITY, nack=True)
            return
        await self._aws.sqs(
            "send_message",
            QueueUrl=self.dead_letter_queue_url,
            MessageBody=delivery.wire_body,
            MessageAttributes={
                # the id the worker saw (a foreign producer's message has SQS's only)
                ID: {"DataType": "String", "StringValue": delivery.message_id},
                **delivery.wire_attributes,
                REASON: reason_attribute(reason),
            },
        )
        await self.settle_ack(delivery)

    def forget(self, delivery: SqsDelivery) -> None:
        """``delivery`` is settled: ``close`` does not give it back."""
        self._unsettled.pop(delivery.receipt_handle, None)

    # ------------------------------------------------------------------ local (LocalDeliveries)

    async def _send_dead(self, delivery: LocalDelivery[SqsDelivery], reason: str) -> bool:
        """Send a local delivery's message to the dead-letter queue (False: there is none)."""
        if self.dead_letter_queue_url is None:
            _log.error(
                "message %s: no dead-letter queue; dropped here, its delayed copy goes on: %s",
                delivery.message_id,
                reason,
            )
            return False
        message = ports.Message(id=delivery.message_id, body=delivery.body)
        encoded = encode(message.id, message.body)
        if encoded.size > self.max_message_bytes - SIZE_MARGIN:
            encoded = await self._offloaded(message, encoded.size)
        await self._aws.sqs(
            "send_message",
            QueueUrl=self.dead_letter_queue_url,
            MessageBody=encoded.body,
            MessageAttributes={**encoded.attributes, REASON: reason_attribute(reason)},
        )
        return True

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Give back unsettled deliveries, finish calls in flight, close an owned ``Aws``.

        Idempotent. Waits for receive calls in flight (what they bring goes back too).
        """
        if self._closed:
            return
        self._closed = True
        await self.stop_receiving()
        if self._polls:
            await asyncio.wait(set(self._polls), timeout=_CLOSE_WAIT)
        await self._settle_tasks()
        unsettled, self._unsettled = self._unsettled, {}
        await self._release(list(unsettled), self.queue_url)
        if self._owns_aws:
            self._aws.close()

    async def _settle_tasks(self) -> None:
        """Flush the batchers and wait for every task (batches, give-backs) to finish."""
        self._sends.flush()
        self._deletes.flush()
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def dead_letters(self) -> list[tuple[str, str]]:
        """``(message id, reason)`` of every message in the dead-letter queue, left there.

        The messages are received (hidden for 30 s meanwhile) and made visible again. A
        message the redrive policy moved there has no reason of its own: its reason is
        ``REDRIVE_REASON``. On real SQS a peek may miss messages while others receive them.
        """
        url = self.dead_letter_queue_url
        if url is None:
            return []
        found: dict[str, tuple[str, str]] = {}
        handles: list[str] = []
        try:
            seconds = 1  # one long poll sees every server; then short ones until empty
            while messages := await self._peek(url, seconds):
                seconds = 0
                for message in messages:
                    handles.append(str(message["ReceiptHandle"]))
                    found.setdefault(str(message["MessageId"]), _dead_entry(message))
        finally:
            await self._release(handles, url)
        return list(found.values())

    async def _peek(self, url: str, seconds: int) -> list[dict[str, Any]]:
        answer = await self._aws.poll(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=BATCH_ENTRIES,
            WaitTimeSeconds=seconds,
            VisibilityTimeout=_PEEK_SECONDS,
            **_RECEIVE,
        )
        return list(answer.get("Messages", []))

    async def delete_queues(self) -> None:
        """Delete the jobs and dead-letter queues (tests). Also after ``close``."""
        urls = tuple(u for u in (self.queue_url, self.dead_letter_queue_url) if u is not None)
        aws = self._aws
        if aws.closed:
            aws = Aws(sqs_client=aws.sqs_client, dynamodb_client=aws.dynamodb_client)
        try:
            await drop_queues(aws, urls)
        finally:
            if aws is not self._aws:
                aws.close()

    # ------------------------------------------------------------------ internals

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise TransientBackendError(
                f"{what}: the SQS adapter is closed (its unsettled messages were made visible "
                "again)"
            )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task that ``close`` waits for."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, handles: Iterable[str], url: str) -> None:
        """Make these messages visible at once (batched; failures logged, never raised)."""
        batches = pack(list(handles), size=lambda _: 0, limit=1)
        await asyncio.gather(*(self._release_batch(batch, url) for batch in batches))

    async def _release_batch(self, handles: list[str], url: str) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles)
        ]
        try:
            answer = await self._aws.sqs(
                "change_message_visibility_batch", QueueUrl=url, Entries=entries
            )
        except BackendError as exc:
            _log.warning("could not make %d messages visible again: %s", len(handles), exc)
            return
        for error in entry_errors(answer, len(entries), "release", stale_ok=True):
            if error is not None:
                _log.warning("could not make a message visible again: %s", error)


def _went_on(exc: Exception) -> bool:
    """Whether a copy's ``extend`` failed because it went on (a stale receipt handle)."""
    return isinstance(exc, PermanentBackendError) and stale_error(exc)


def _visibility_left(delivery: SqsDelivery, seconds: float) -> int:
    """``seconds`` as a visibility timeout, within the 12 hours SQS allows after a receive."""
    left = MAX_VISIBILITY - math.ceil(time.monotonic() - delivery.received_at)
    return min(visibility_seconds(seconds), max(0, left))


def _dead_entry(message: dict[str, Any]) -> tuple[str, str]:
    """``(message id, reason)`` of a message of the dead-letter queue."""
    attributes = message.get("MessageAttributes") or {}
    reason = attributes.get(REASON, {}).get("StringValue")
    decoded = decode({**message, "Body": message.get("Body", "")})
    return decoded.message_id, str(reason) if reason is not None else REDRIVE_REASON
