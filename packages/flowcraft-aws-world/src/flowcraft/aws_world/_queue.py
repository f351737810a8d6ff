"""The World's queue on SQS: two standard queues, a dedup window in DynamoDB, chained delays.

Routing: queue names starting with ``__wkf_workflow_`` go to the workflow queue, every other
name to the step queue; the body carries the queue name (handlers are chosen by the longest
registered prefix), the World's message id and the deliveries already made, as JSON
(``ensure_ascii``, so any string survives SQS's character rules).

* **Idempotency keys**: a conditional put of ``key`` in the dedup table (``message_id``,
  ``expires``; DynamoDB's TTL may delete expired items, which are also ignored on read). A
  repeat within the window returns the first message id and sends nothing. The item is
  marked ``sent`` after the send; a repeat that finds an unsent item older than a minute
  (its sender died between the two) sends it again, so a crash duplicates rather than loses.
  A claim or a send that failed (services unreachable) is remembered: a repeat in the same
  World sends it at once instead of waiting out that minute. A failed claim may have landed
  (its answer lost), so the repeat finds it held, unsent and young, and would otherwise skip
  it; sending it twice is at-least-once, which consumers handle. A repeat that finds another
  sender's claim unsent and young cannot tell a send under way from a sender that died
  after its claim: it sends a copy delayed until the claim would go stale, so the message
  comes at least once either way (a vercel replay redelivered to another World re-enqueues
  the run's pending steps, and was the one repeat such a step would ever get).
* **Delays** are SQS ``DelaySeconds`` (whole seconds, rounded up: never early) of at most
  900 s per hop; the body carries the due time, and a message received before it is sent
  again with the remaining delay (a chain of hops) and deleted.
* **Consumers** long-poll each queue (``WaitTimeSeconds``), receive up to 10 messages per
  call, run handlers concurrently (at most ``max_in_flight``), extend a running handler's
  visibility every third of the timeout, and delete settled messages in batches
  (``DeleteMessageBatch``, the deletes of one event-loop turn together).
* **Large messages** (a body over 200 KiB; SQS takes 256 KiB) travel in S3
  (``messages/<message id>``), the body naming the object; a duplicate of the message
  may still need it after an ack, so objects expire by the bucket's lifecycle rule (14 days,
  SQS's longest retention).
* **Outcomes**: ``None`` deletes; ``Redeliver(d)`` sends the same message (same id, next
  attempt) with delay ``d`` and then deletes (a crash in between duplicates it); a raise
  makes the message visible again after a backoff (ChangeMessageVisibility), and after
  ``max_receive_count`` receives SQS moves it to the DLQ. A message nobody has a handler
  for is sent again after 1 s (held). On ``aclose()`` deliveries in flight are made visible
  at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flowcraft.aws_world._aws import Aws, Item, guarded
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._errors import Refused
from flowcraft.aws_world._tables import n, s
from flowcraft.core.errors import BackendError
from flowcraft.core.world import (
    WORKFLOW_QUEUE_PREFIX,
    Backoff,
    QueueHandler,
    QueueMessage,
    Redeliver,
)

log = logging.getLogger("flowcraft.aws_world")

#: The longest delay of one SQS message.
MAX_HOP = 900
#: The largest SQS message body.
MAX_BODY = 256 * 1024
#: Bodies longer than this carry their message in S3 (``messages/<message id>``).
INLINE_BODY = 200 * 1024
#: An unsent dedup claim older than this is sent again by a repeat.
STALE_CLAIM = 60.0


@dataclass(frozen=True, slots=True)
class Held:
    """A dedup claim found in place: its message id, whether it was sent, its age (s)."""

    message_id: str
    sent: bool
    age: float


def repeat_delay(held: Held, *, ours: bool) -> float | None:
    """What a repeated enqueue of a held key sends: ``None`` nothing, else after how long.

    0: at once (this World claimed it and did not send it, or the claim went stale: its
    sender died between claim and send). A young unsent claim of another sender: a copy
    due when the claim would go stale (the sender may have died after its claim; if not,
    the copy is a duplicate, which consumers handle). A sent claim: nothing.
    """
    if ours or (not held.sent and held.age > STALE_CLAIM):
        return 0.0
    if held.sent:
        return None
    return STALE_CLAIM - held.age + 1.0


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message as it travels in an SQS body."""

    message_id: str
    queue_name: str
    message: QueueMessage
    attempts: int = 0
    due: float | None = None
    stored: str | None = None

    def body(self) -> str:
        """The JSON body (the message left out when it is stored in S3)."""
        raw: dict[str, Any] = {"id": self.message_id, "q": self.queue_name, "a": self.attempts}
        if self.stored is not None:
            raw["s3"] = self.stored
        else:
            raw["m"] = self.message
        if self.due is not None:
            raw["due"] = self.due
        return json.dumps(raw, ensure_ascii=True, separators=(",", ":"))

    def with_(self, **changes: Any) -> Envelope:  # noqa: ANN401
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, body: str) -> tuple[Envelope, str | None]:
        """The envelope of an SQS body and the S3 key of its message (``None``: inline)."""
        raw = json.loads(body)
        key = raw.get("s3")
        envelope = cls(raw["id"], raw["q"], raw.get("m", {}), int(raw.get("a", 0)), raw.get("due"))
        return envelope, key


class SqsQueue:
    """Producer and consumers of the two queues (see the module)."""

    def __init__(self, aws: Aws, config: AwsWorldConfig, *, backoff: Backoff | None = None) -> None:
        self._aws = aws
        self._config = config
        self._backoff = backoff or Backoff(base=1.0, cap=60.0)
        self._handlers: list[tuple[str, QueueHandler]] = []
        self._urls: tuple[str, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pollers: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(64)
        self._deletes = BatchDeletes(aws)
        #: Keys this World may have claimed but did not send (key -> those message ids).
        self._unsent: dict[str, set[str]] = {}

    def use_urls(self, workflow_url: str, step_url: str) -> None:
        """The queues' URLs (resolved by the World when it opens)."""
        self._urls = (workflow_url, step_url)

    @property
    def resolved(self) -> bool:
        """Whether the queues' URLs are known."""
        return self._urls is not None

    def _url(self, queue_name: str) -> str:
        assert self._urls is not None, "queue URLs are resolved when the World opens"
        return self._urls[0] if queue_name.startswith(WORKFLOW_QUEUE_PREFIX) else self._urls[1]

    # ------------------------------------------------------------------ producing

    async def enqueue(
        self, queue_name: str, message: QueueMessage, *, key: str | None, delay: float
    ) -> str:
        """Send ``message`` (once per ``key`` within the window); its message id."""
        message_id = f"msg_{uuid.uuid4().hex}"
        envelope = Envelope(message_id, queue_name, message)
        if key is not None:
            try:
                held = await self._claim(key, message_id)
            except BaseException:  # the put may have landed: a repeat here sends it at once
                self._unsent.setdefault(key, set()).add(message_id)
                raise
            if held is not None:
                envelope = Envelope(held.message_id, queue_name, message)
                later = repeat_delay(held, ours=held.message_id in self._unsent.get(key, ()))
                if later is None:
                    return held.message_id
                if later > 0:  # another sender's young claim: a copy for when it goes stale
                    await self._send(envelope, max(0.0, delay, later))
                    return held.message_id
        try:
            await self._send(envelope, max(0.0, delay))
        except BaseException:
            if key is not None:  # claimed, not sent: this process's repeat sends it at once
                self._unsent.setdefault(key, set()).add(envelope.message_id)
            raise
        if key is not None:
            self._unsent.pop(key, None)
            await self._aws.dynamodb(
                "update_item",
                TableName=self._config.dedup_table,
                Key={"key": s(key)},
                UpdateExpression="SET sent = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
        return envelope.message_id

    async def _claim(self, key: str, message_id: str) -> Held | None:
        """``None`` if this call claimed ``key``; else the claim that holds it."""
        table = self._config.dedup_table
        for _ in range(5):
            now = time.time()
            item = {
                "key": s(key),
                "message_id": s(message_id),
                "expires": n(math.ceil(now + self._config.dedup_window_seconds)),
                "claimed": n(int(now)),
                "sent": {"BOOL": False},
            }
            try:
                await self._aws.dynamodb(
                    "put_item",
                    TableName=table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#k) OR expires < :now",
                    ExpressionAttributeNames={"#k": "key"},
                    ExpressionAttributeValues={":now": n(int(now))},
                )
            except Refused:
                found = await self._aws.dynamodb(
                    "get_item", TableName=table, Key={"key": s(key)}, ConsistentRead=True
                )
                held = found.get("Item")
                if held is None:
                    continue
                return Held(
                    held["message_id"]["S"],
                    sent=held["sent"]["BOOL"],
                    age=max(0.0, now - int(held["claimed"]["N"])),
                )
            return None
        return None

    async def _send(self, envelope: Envelope, delay: float) -> None:
        hop = min(MAX_HOP, math.ceil(delay))
        due = time.time() + delay if delay > hop else None
        body = envelope.with_(due=due, stored=None).body()
        if len(body) > INLINE_BODY:
            key = f"messages/{envelope.message_id}"
            data = json.dumps(envelope.message, ensure_ascii=True, separators=(",", ":"))
            await self._aws.s3(
                "put_object", Bucket=self._config.stream_bucket, Key=key, Body=data.encode()
            )
            body = envelope.with_(due=due, stored=key).body()
        await self._aws.sqs(
            "send_message",
            QueueUrl=self._url(envelope.queue_name),
            MessageBody=body,
            DelaySeconds=hop,
        )

    # ------------------------------------------------------------------ consuming

    def register(self, prefix: str, handler: QueueHandler) -> None:
        """Deliver queues starting with ``prefix`` to ``handler``."""
        self._handlers.append((prefix, handler))
        self._handlers.sort(key=lambda entry: len(entry[0]), reverse=True)

    def _handler_for(self, queue_name: str) -> QueueHandler | None:
        for prefix, handler in self._handlers:
            if queue_name.startswith(prefix):
                return handler
        return None

    def start(self) -> None:
        """Begin polling both queues (idempotent)."""
        if self._pollers or self._urls is None:
            return
        loop = asyncio.get_running_loop()
        self._pollers = [loop.create_task(self._poll(url)) for url in set(self._urls)]

    async def stop(self) -> None:
        """Stop polling; deliveries in flight become visible again at once."""
        pollers, self._pollers = self._pollers, []
        for task in (*pollers, *self._tasks):
            task.cancel()
        await asyncio.gather(*pollers, *self._tasks, return_exceptions=True)

    async def _poll(self, url: str) -> None:
        while True:
            try:
                messages = await self._receive(url)
            except asyncio.CancelledError:
                raise
            except Exception:  # a transient outage: poll again shortly
                log.warning("receiving from %s failed; polling again in 1 s", url, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(self._deliver(url, message))
                self._tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _receive(self, url: str) -> list[Item]:
        params = {
            "QueueUrl": url,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": self._config.poll_wait_seconds,
            "VisibilityTimeout": self._config.visibility_timeout,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        client = self._aws.sqs_client
        future = self._aws.submit_poll(lambda: guarded(client, "receive_message", params))
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda done: _release_late(client, url, done))
            raise
        messages: list[Item] = result.get("Messages", [])
        return messages

    async def _deliver(self, url: str, message: Item) -> None:
        receipt = message["ReceiptHandle"]
        received = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))

        def run(envelope: Envelope, handler: QueueHandler, attempt: int) -> Awaitable[Reply]:
            return self._run(url, receipt, envelope, handler, attempt)

        try:
            settled, attempt = await self.process(message["Body"], received, run)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._visible_in(url, receipt, 0)
            raise
        except BackendError:  # unreachable: the message comes back after its visibility timeout
            log.warning("delivering %s failed; it will come again", receipt[:16], exc_info=True)
            return
        try:
            if settled:
                await self._deletes.delete(url, receipt)
            else:
                await self._visible_in(url, receipt, math.ceil(self._backoff.delay(attempt)))
        except BackendError:  # unreachable: the message comes back after its visibility timeout
            log.warning(
                "settling %s failed; it will be delivered again", receipt[:16], exc_info=True
            )

    async def process(
        self,
        body: str,
        received: int,
        run: Callable[[Envelope, QueueHandler, int], Awaitable[Reply]] | None = None,
    ) -> tuple[bool, int]:
        """Deliver one received SQS message body; whether it is settled, and its attempt.

        Settled (the SQS message may be deleted): the handler returned, or asked for a
        redelivery (sent as a new message first), or the message was not due yet or had no
        handler (sent again, delayed). Not settled: the handler raised (logged); the SQS
        message should become visible again. Used by the pollers and by the Lambda handler.
        """
        envelope, stored = Envelope.parse(body)
        if stored is not None:
            data = await self._aws.s3_read(self._config.stream_bucket, stored)
            envelope = envelope.with_(message=json.loads(data))
        before = envelope.attempts + received - 1
        if envelope.due is not None and envelope.due > time.time():
            await self._send(envelope.with_(attempts=before), envelope.due - time.time())
            return True, before
        handler = self._handler_for(envelope.queue_name)
        if handler is None:
            await self._send(envelope.with_(attempts=before), 1.0)
            return True, before
        attempt = before + 1
        try:
            if run is None:
                answer = await _call(handler, envelope, attempt)
            else:
                answer = await run(envelope, handler, attempt)
        except Exception:
            log.exception("queue handler failed on %s (attempt %d)", envelope.message_id, attempt)
            return False, attempt
        if isinstance(answer, Redeliver):
            await self._send(envelope.with_(attempts=attempt), max(0.0, answer.delay_seconds))
        return True, attempt

    async def _run(
        self, url: str, receipt: str, envelope: Envelope, handler: QueueHandler, attempt: int
    ) -> Redeliver | None:
        heartbeat = asyncio.get_running_loop().create_task(self._extend(url, receipt))
        try:
            return await _call(handler, envelope, attempt)
        finally:
            heartbeat.cancel()

    async def _extend(self, url: str, receipt: str) -> None:
        timeout = self._config.visibility_timeout
        while True:
            await asyncio.sleep(max(1.0, timeout / 3))
            with contextlib.suppress(Exception):
                await self._visible_in(url, receipt, timeout)

    async def _visible_in(self, url: str, receipt: str, seconds: int) -> None:
        await self._aws.sqs(
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=receipt,
            VisibilityTimeout=seconds,
        )


Reply = Redeliver | None


def _call(handler: QueueHandler, envelope: Envelope, attempt: int) -> Awaitable[Reply]:
    return handler(
        envelope.message,
        queue_name=envelope.queue_name,
        message_id=envelope.message_id,
        attempt=attempt,
    )


class BatchDeletes:
    """Deletes settled messages ten at a time (``DeleteMessageBatch``).

    A delete waits for the deletes requested in the same turn of the event loop and goes
    with them; a failed entry is only logged: the message comes back after its visibility
    timeout (at least once).
    """

    def __init__(self, aws: Aws) -> None:
        self._aws = aws
        self._pending: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}

    async def delete(self, url: str, receipt: str) -> None:
        """Delete ``receipt`` of queue ``url`` (with whatever else is waiting)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._pending.setdefault(url, [])
        waiting.append((receipt, future))
        if len(waiting) == 1:
            asyncio.get_running_loop().create_task(self._flush(url))
        await future

    async def _flush(self, url: str) -> None:
        await asyncio.sleep(0)  # let this turn's deletes join
        while waiting := self._pending.pop(url, []):
            for start in range(0, len(waiting), 10):
                await self._send(url, waiting[start : start + 10])

    async def _send(self, url: str, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": r} for i, (r, _) in enumerate(batch)]
        try:
            result = await self._aws.sqs("delete_message_batch", QueueUrl=url, Entries=entries)
            for failed in result.get("Failed", []):
                log.warning("deleting a settled message failed: %s", failed.get("Message"))
        except BackendError as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)


def _release_late(client: Any, url: str, done: concurrent.futures.Future[Item]) -> None:  # noqa: ANN401
    """Make messages a cancelled long poll received visible again (runs in its thread)."""
    if done.cancelled() or done.exception() is not None:
        return
    entries = [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
        for i, m in enumerate(done.result().get("Messages", []))
    ]
    if entries:
        with contextlib.suppress(Exception):
            guarded(
                client, "change_message_visibility_batch", {"QueueUrl": url, "Entries": entries}
            )
