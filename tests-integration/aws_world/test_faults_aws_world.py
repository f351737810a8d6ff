"""Faults of AwsWorld's queue on moto: a worker process SIGKILLed mid-delivery, a poison message.

A killed worker stops extending its message's visibility, so SQS delivers it again to another
World once the visibility timeout passes (same message id, next attempt) and nothing is lost;
a message whose handler always raises is moved to the DLQ by the redrive policy; an
idempotency key whose claim landed but whose answer was lost is still sent by a repeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from flowcraft.aws_world import AwsWorld, AwsWorldConfig, _queue
from flowcraft.core.errors import BackendError
from flowcraft.core.world import QueueMessage, Redeliver

WORKER = Path(__file__).with_name("aws_world_killed_worker.py")

pytestmark = pytest.mark.timeout(90)


async def _eventually(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened within {timeout} s: {what}")


def _config(prefix: str, endpoint_url: str, **overrides: object) -> AwsWorldConfig:
    return AwsWorldConfig.for_prefix(
        prefix,
        endpoint_url=endpoint_url,
        poll_wait_seconds=1,
        visibility_timeout=2,
        **overrides,
    )


async def _drop(config: AwsWorldConfig) -> None:
    cleaner = AwsWorld(config)
    try:
        await cleaner.drop_infrastructure()
    finally:
        await cleaner.aclose()


async def test_a_worker_killed_mid_delivery_loses_nothing(aws_endpoint_url: str) -> None:
    prefix = f"fk-{uuid.uuid4().hex[:10]}"
    world = AwsWorld(_config(prefix, aws_endpoint_url))
    await world.ensure_infrastructure()
    child = subprocess.Popen([sys.executable, str(WORKER), prefix, aws_endpoint_url])
    try:
        message_id = await world.queue("fault_1", {"n": 1})

        async def marked() -> bool:
            page = await world.streams_get_chunks("fault", "marks")
            return bool(page.data)

        await _eventually(marked, "the worker process to take the message")
        marks = [c.data for c in (await world.streams_get_chunks("fault", "marks")).data]
        assert marks == [f"{message_id}:1".encode()]
        await asyncio.sleep(3.0)  # longer than the visibility timeout: the worker extends it
        assert len((await world.streams_get_chunks("fault", "marks")).data) == 1
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)

        deliveries: list[tuple[str, int]] = []

        async def record(
            message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
        ) -> Redeliver | None:
            deliveries.append((message_id, attempt))
            return None

        world.register_handler("fault_", record)
        async with world:

            async def redelivered() -> bool:
                return bool(deliveries)

            await _eventually(redelivered, "the message to come back after the kill")
            await asyncio.sleep(3.0)  # acknowledged: it does not come again
        assert deliveries == [(message_id, 2)]
    finally:
        if child.poll() is None:
            child.kill()
        await _drop(world.config)


async def test_a_poison_message_is_dead_lettered(aws_endpoint_url: str) -> None:
    prefix = f"fp-{uuid.uuid4().hex[:10]}"
    world = AwsWorld(_config(prefix, aws_endpoint_url, max_receive_count=2))
    await world.ensure_infrastructure()
    attempts: list[int] = []

    async def poison(
        message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        attempts.append(attempt)
        raise RuntimeError("poison (on purpose)")

    world.register_handler("poison_", poison)
    try:
        async with world:
            message_id = await world.queue("poison_1", {"bad": True})
            dlq = (await world.aws.sqs("get_queue_url", QueueName=f"{prefix}-steps-dlq"))[
                "QueueUrl"
            ]
            dead: list[dict[str, object]] = []

            async def dead_lettered() -> bool:
                got = await world.aws.sqs("receive_message", QueueUrl=dlq, WaitTimeSeconds=1)
                dead.extend(json.loads(m["Body"]) for m in got.get("Messages", []))
                return bool(dead)

            await _eventually(dead_lettered, "the poison message in the DLQ")
        assert attempts == [1, 2]
        assert [(d["id"], d["q"], d["m"]) for d in dead] == [
            (message_id, "poison_1", {"bad": True})
        ]
    finally:
        await _drop(world.config)


async def test_a_claim_whose_answer_was_lost_is_sent_by_the_repeat(aws_endpoint_url: str) -> None:
    """The dedup claim's put lands but its answer is lost: the repeat must send, not skip."""
    world = AwsWorld(_config(f"fl-{uuid.uuid4().hex[:10]}", aws_endpoint_url))
    await world.ensure_infrastructure()
    put_item = world.aws.dynamodb
    claimed: list[str] = []

    async def answer_lost(operation: str, **params: object) -> dict[str, object]:
        result = await put_item(operation, **params)
        first_claim = not claimed and operation == "put_item"
        if first_claim and params["TableName"] == world.config.dedup_table:
            item = params["Item"]
            assert isinstance(item, dict)
            claimed.append(item["message_id"]["S"])
            raise BackendError("dynamodb put_item: connection reset (answer lost)")
        return result

    world.aws.dynamodb = answer_lost  # type: ignore[method-assign]
    deliveries: list[tuple[str, int]] = []

    async def record(
        message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        deliveries.append((message_id, attempt))
        return None

    world.register_handler("lost_", record)
    try:
        with pytest.raises(BackendError):
            await world.queue("lost_1", {"n": 1}, idempotency_key="key_1")
        message_id = await world.queue("lost_1", {"n": 1}, idempotency_key="key_1")
        assert message_id == claimed[0]  # the claim that landed, now sent
        assert await world.queue("lost_1", {"n": 1}, idempotency_key="key_1") == message_id
        async with world:

            async def delivered() -> bool:
                return bool(deliveries)

            await _eventually(delivered, "the message of the repeated enqueue", timeout=15)
            await asyncio.sleep(2.0)  # the third enqueue was a duplicate: nothing more comes
        assert deliveries == [(message_id, 1)]
    finally:
        await _drop(world.config)


async def test_a_young_claim_of_a_sender_that_died_is_still_delivered(
    aws_endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another World claimed the key and died before sending: a repeat here finds the claim
    unsent and young, and sends a copy due when the claim goes stale (once, never lost)."""
    monkeypatch.setattr(_queue, "STALE_CLAIM", 3.0)
    world = AwsWorld(_config(f"fy-{uuid.uuid4().hex[:10]}", aws_endpoint_url))
    await world.ensure_infrastructure()
    deliveries: list[tuple[str, int, float]] = []

    async def record(
        message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        deliveries.append((message_id, attempt, time.monotonic()))
        return None

    world.register_handler("died_", record)
    try:
        await world.aws.dynamodb(  # the claim of a World that died before its send
            "put_item",
            TableName=world.config.dedup_table,
            Item={"key": {"S": "key_1"}, "message_id": {"S": "msg_of_the_dead"},
                  "expires": {"N": str(int(time.time()) + 600)},
                  "claimed": {"N": str(int(time.time()))}, "sent": {"BOOL": False}},
        )  # fmt: skip
        began = time.monotonic()
        assert await world.queue("died_1", {"n": 1}, idempotency_key="key_1") == "msg_of_the_dead"
        async with world:

            async def delivered() -> bool:
                return bool(deliveries)

            await _eventually(delivered, "the copy due when the claim went stale", timeout=20)
            await asyncio.sleep(2.0)
        ((message_id, attempt, at),) = deliveries
        assert (message_id, attempt) == ("msg_of_the_dead", 1)
        assert at - began >= 2.0  # delayed: the dead sender might have been sending still
    finally:
        await _drop(world.config)
