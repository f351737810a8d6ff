"""SqsAdapter on moto: what only SQS shows (offloaded bodies, batching, visibility, dead letters).

The queue port's contract itself is in the conformance suite (test_ports_queue), which the SQS
backend runs. Each test makes its own queues (visibility timeout 2 s), and its own offload
table where it needs one, and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.core.ports import Message
from flowcraft.core.testing.sticky import (
    check_dead_consumers_copies,
    check_nacked_local_delivery,
    check_sticky_is_plain,
)
from flowcraft.sqs import SqsBackend
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._codec import ID, OFFLOAD, REASON
from flowcraft.sqs._delivery import SqsDelivery
from flowcraft.sqs._queue import REDRIVE_REASON, SqsAdapter
from flowcraft.sqs._schema import Names, drop_queues, drop_tables, ensure_queues, ensure_tables

#: The queues' visibility timeout, seconds: "at once" below means well within it.
VISIBILITY = 2


@dataclass
class Space:
    """Fresh queues (and maybe tables) of one namespace, an ``Aws`` that counts SQS calls."""

    aws: Aws
    names: Names
    jobs: str
    dead: str
    tables: bool
    visibility: int = VISIBILITY
    calls: Counter[str] = field(default_factory=Counter)
    adapters: list[SqsAdapter] = field(default_factory=list)

    def adapter(self, **options: Any) -> SqsAdapter:
        """An adapter on these queues sharing the ``Aws`` (closed at teardown)."""
        table = self.names.contexts if self.tables else None
        adapter = SqsAdapter(
            queue_url=self.jobs,
            dead_letter_queue_url=self.dead,
            offload_table_name=table,
            aws=self.aws,
            visibility_timeout=self.visibility,
            **options,
        )
        self.adapters.append(adapter)
        return adapter

    def count(self, event_name: str, **_: Any) -> None:
        """botocore ``before-call`` hook: one more call of this operation."""
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    async def raw_dead(self) -> list[dict[str, Any]]:
        """The dead-letter queue's messages as SQS holds them (received, then released)."""
        answer = await self.aws.sqs(
            "receive_message",
            QueueUrl=self.dead,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        for message in messages:
            await self.aws.sqs(
                "change_message_visibility",
                QueueUrl=self.dead,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )
        return messages


MakeSpace = Callable[..., Awaitable[Space]]


@pytest.fixture
async def make_space(aws_endpoint_url: str) -> AsyncIterator[MakeSpace]:
    """Makes a fresh namespace's queues (and tables); everything is dropped afterwards."""
    made: list[Space] = []

    async def make(
        *, max_receive_count: int = 10, tables: bool = False, visibility: int = VISIBILITY
    ) -> Space:
        aws = Aws(endpoint_url=aws_endpoint_url)
        names = Names.of(f"t{uuid4().hex[:12]}")
        jobs, dead = await ensure_queues(
            aws, names, visibility_timeout=visibility, max_receive_count=max_receive_count
        )
        space = Space(aws=aws, names=names, jobs=jobs, dead=dead, tables=tables,
                      visibility=visibility)  # fmt: skip
        made.append(space)
        if tables:
            await ensure_tables(aws, names)
        aws.sqs_client.meta.events.register("before-call.sqs.*", space.count)
        return space

    yield make
    for space in made:
        for adapter in space.adapters:
            await adapter.close()
        await drop_queues(space.aws, (space.jobs, space.dead))
        if space.tables:
            await drop_tables(space.aws, space.names)
        space.aws.close()


async def receive_all(queue: SqsAdapter, count: int, within: float = 10.0) -> list[SqsDelivery]:
    """The next ``count`` deliveries (fails if they do not come within ``within`` seconds)."""
    got: list[SqsDelivery] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} came"
        for delivery in await queue.receive(10, wait=1.0):
            assert isinstance(delivery, SqsDelivery)
            got.append(delivery)
    assert len(got) == count
    return got


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize("size", [300_000, 1_000_000])
async def test_a_large_body_round_trips_through_the_offload_table(
    make_space: MakeSpace, size: int
) -> None:
    space = await make_space(tables=True)
    queue = space.adapter()
    body = bytes(range(256)) * (size // 256)
    await queue.enqueue(Message(id="big", body=body))
    (delivery,) = await receive_all(queue, 1)
    assert (delivery.message_id, delivery.body) == ("big", body)
    key = delivery.wire_attributes[OFFLOAD]["StringValue"]
    assert key.startswith("body#big#")
    chunks = await _chunks(space, key)
    assert [item["sk"]["S"] for item in chunks] == [f"#{i:06d}" for i in range(len(chunks))]
    assert len(chunks) == -(-size // 350_000)
    expires = int(chunks[0]["expires_at"]["N"])
    assert abs(expires - (time.time() + 15 * 86_400)) < 60
    await delivery.ack()
    assert len(await _chunks(space, key)) == len(chunks)  # kept: a duplicate may need them


async def _chunks(space: Space, key: str) -> list[dict[str, Any]]:
    """The offloaded items under ``key`` (every page)."""
    params: dict[str, Any] = {
        "TableName": space.names.contexts,
        "KeyConditionExpression": "runId = :k",
        "ExpressionAttributeValues": {":k": {"S": key}},
        "ConsistentRead": True,
        "ProjectionExpression": "sk, expires_at",
    }
    items: list[dict[str, Any]] = []
    while True:
        page = await space.aws.dynamodb("query", **params)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def test_a_large_body_without_an_offload_table_is_refused(make_space: MakeSpace) -> None:
    queue = (await make_space()).adapter()
    with pytest.raises(PermanentBackendError, match="262144"):
        await queue.enqueue(Message(id="big", body=b"x" * 300_000))


@pytest.mark.parametrize(
    "body", [b"\xff\xfe\x00 not utf-8", b"", b"text \x00 with nul", "😀 ok".encode()]
)
async def test_any_body_round_trips(make_space: MakeSpace, body: bytes) -> None:
    queue = (await make_space()).adapter()
    await queue.enqueue(Message(id="odd", body=body))
    (delivery,) = await receive_all(queue, 1)
    assert (delivery.message_id, delivery.body) == ("odd", body)
    await delivery.ack()


# ------------------------------------------------------------------ batching


async def test_concurrent_enqueues_and_acks_share_batch_calls(make_space: MakeSpace) -> None:
    space = await make_space()
    queue = space.adapter()
    messages = [Message(id=f"m{i}", body=f"body {i}".encode()) for i in range(25)]
    await asyncio.gather(*(queue.enqueue(message) for message in messages))
    assert space.calls["SendMessageBatch"] <= 3
    assert space.calls["SendMessage"] == 0
    got = await receive_all(queue, 25)
    assert sorted((d.message_id, d.body) for d in got) == sorted((m.id, m.body) for m in messages)
    await asyncio.gather(*(delivery.ack() for delivery in got))
    assert space.calls["DeleteMessageBatch"] <= 3
    assert await queue.receive(10, wait=0.3) == []


# ------------------------------------------------------------------ nothing lost


async def test_a_cancelled_receive_gives_back_what_its_call_brings(make_space: MakeSpace) -> None:
    window = 10  # seconds: a kept message returns no earlier; the give-back takes far less
    space = await make_space(visibility=window)
    queue = space.adapter()
    returned: list[int] = []
    space.aws.sqs_client.meta.events.register(
        "after-call.sqs.ReceiveMessage",
        lambda parsed, **_: returned.append(len(parsed.get("Messages", []))),
    )
    waiting = asyncio.ensure_future(queue.receive(1, wait=5.0))
    await asyncio.sleep(0.3)  # its long poll is in flight
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    sent = time.monotonic()  # SQS hides it after this: kept, it returns >= window later
    await queue.enqueue(Message(id="caught", body=b"x"))
    deadline = time.monotonic() + 5
    while returned != [1]:  # the abandoned call got the message
        assert time.monotonic() < deadline, returned
        await asyncio.sleep(0.01)
    (again,) = await receive_all(queue, 1)
    assert time.monotonic() - sent < window  # given back, not after the timeout
    assert (again.message_id, again.delivery_count) == ("caught", 2)
    await again.ack()


async def test_close_makes_unsettled_deliveries_visible_at_once(make_space: MakeSpace) -> None:
    space = await make_space()
    first, second = space.adapter(), space.adapter()
    for name in ("held", "acked"):
        await first.enqueue(Message(id=name, body=b"x"))
    got = {d.message_id: d for d in await receive_all(first, 2)}
    await got["acked"].ack()
    await first.close()
    with pytest.raises(TransientBackendError, match="closed"):
        await got["held"].ack()
    started = time.monotonic()
    (again,) = await receive_all(second, 1)
    assert time.monotonic() - started < VISIBILITY / 2
    assert (again.message_id, again.delivery_count) == ("held", 2)
    await again.ack()
    assert await second.receive(10, wait=0.3) == []


async def test_stop_receiving_ends_a_waiting_receive_at_once(make_space: MakeSpace) -> None:
    space = await make_space()
    queue, other = space.adapter(), space.adapter()
    waiting = asyncio.ensure_future(queue.receive(1, wait=5.0))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await queue.stop_receiving()
    assert await waiting == []
    assert await queue.receive(1, wait=5.0) == []
    assert time.monotonic() - started < 0.5
    await other.enqueue(Message(id="late", body=b"x"))  # the abandoned poll may take it
    (late,) = await receive_all(other, 1, within=VISIBILITY / 2 + 1)
    assert late.message_id == "late"
    await late.ack()


# ------------------------------------------------------------------ dead letters


async def test_dead_letter_keeps_body_attributes_and_reason(make_space: MakeSpace) -> None:
    space = await make_space(tables=True)
    queue = space.adapter()
    await queue.enqueue(Message(id="poison", body=b"\xff" * 200_000))  # offloaded (base64)
    (delivery,) = await receive_all(queue, 1)
    await delivery.dead_letter("undecodable message: \x00 test")
    assert await queue.dead_letters() == [("poison", "undecodable message: \ufffd test")]
    (raw,) = await space.raw_dead()  # still there after the peek
    attributes = raw["MessageAttributes"]
    assert attributes[ID]["StringValue"] == "poison"
    assert attributes[OFFLOAD]["StringValue"] == delivery.wire_attributes[OFFLOAD]["StringValue"]
    assert attributes[REASON]["StringValue"] == "undecodable message: \ufffd test"
    assert await queue.receive(1, wait=0.5) == []


async def test_a_message_past_max_receive_count_is_dead_with_the_redrive_reason(
    make_space: MakeSpace,
) -> None:
    space = await make_space(max_receive_count=2)
    queue = space.adapter()
    await queue.enqueue(Message(id="looping", body=b"x"))
    for count in (1, 2):
        (delivery,) = await receive_all(queue, 1)
        assert delivery.delivery_count == count
        await delivery.nack(0.0)
    assert await queue.receive(1, wait=1.0) == []  # the third receive moves it
    assert await queue.dead_letters() == [("looping", REDRIVE_REASON)]
    assert await queue.dead_letters() == [("looping", REDRIVE_REASON)]  # a peek: still there


# ------------------------------------------------------------------ sticky


async def _left_in_queue(space: Space) -> int:
    """Messages in the jobs queue: visible, in flight and delayed."""
    answer = await space.aws.sqs(
        "get_queue_attributes", QueueUrl=space.jobs, AttributeNames=["All"]
    )
    attributes = answer["Attributes"]
    return sum(
        int(attributes[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


async def test_a_sticky_enqueue_wakes_its_own_receive_and_its_copy_is_dropped_after_the_ack(
    make_space: MakeSpace,
) -> None:
    space = await make_space()
    mine, other = space.adapter(sticky_delay=1), space.adapter(sticky_delay=1)
    assert mine.capabilities.sticky
    assert await mine.receive(10, wait=0) == []  # a consumer now
    waiting = asyncio.ensure_future(mine.receive(10, wait=5))
    await asyncio.sleep(0.3)  # its long poll is in flight
    started = time.monotonic()
    await mine.enqueue(Message(id="s", body=b"next step"), sticky=True)
    (local,) = await waiting
    assert time.monotonic() - started < 0.5  # not after the poll, not after the delay
    assert (local.message_id, local.body, local.delivery_count) == ("s", b"next step", 1)
    assert await other.receive(10, wait=0.5) == []  # the copy is delayed
    await local.ack()
    deletes = space.calls["DeleteMessageBatch"]
    assert await mine.receive(10, wait=2.5) == []  # the copy came back: dropped unseen
    assert space.calls["DeleteMessageBatch"] > deletes
    assert await _left_in_queue(space) == 0


async def test_the_copy_of_a_dead_consumers_sticky_message_reaches_another_after_the_delay(
    make_space: MakeSpace,
) -> None:
    space = await make_space()
    await check_dead_consumers_copies(space.adapter)


async def test_a_copy_that_comes_back_while_its_local_delivery_runs_joins_it(
    make_space: MakeSpace,
) -> None:
    space = await make_space()
    mine = space.adapter(sticky_delay=1)
    await mine.receive(1, wait=0)
    await mine.enqueue(Message(id="long", body=b"l"), sticky=True)
    (local,) = await mine.receive(1, wait=0)
    assert await mine.receive(10, wait=2.0) == []  # the copy came: held, not delivered
    await local.extend(5)  # extends the held copy too
    assert await mine.receive(10, wait=2.5) == []
    await local.ack()  # deletes the held copy
    await asyncio.sleep(0.2)
    assert await _left_in_queue(space) == 0


async def test_a_nacked_local_delivery_comes_back_here_counted(make_space: MakeSpace) -> None:
    space = await make_space()
    await check_nacked_local_delivery(space.adapter)


async def test_sticky_is_plain_for_a_client_a_stopped_consumer_and_when_off(
    make_space: MakeSpace,
) -> None:
    space = await make_space()
    await check_sticky_is_plain(space.adapter)


def test_the_backend_option_sticky_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SqsBackend(endpoint_url="http://x").sticky_delay == 30
    assert SqsBackend(endpoint_url="http://x", visibility_timeout=2).sticky_delay == 2
    assert SqsBackend(endpoint_url="http://x", sticky_delay="12.5").sticky_delay == 13
    assert SqsBackend(endpoint_url="http://x", sticky_delay="none").sticky_delay is None
    for bad in ("0", "51", "soon"):
        with pytest.raises(ValueError, match="option sticky_delay"):
            SqsBackend(endpoint_url="http://x", sticky_delay=bad)
    monkeypatch.setenv("FLOWCRAFT_SQS_STICKY_DELAY", "7")
    assert SqsBackend(endpoint_url="http://x").sticky_delay == 7
    assert SqsBackend(endpoint_url="http://x", sticky_delay="3").sticky_delay == 3
