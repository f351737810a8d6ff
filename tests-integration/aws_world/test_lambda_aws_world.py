"""The Lambda entry point on moto: SQS records delivered, failures reported for retry.

The records are received from the real queue (as Lambda's event source mapping would) and
handed to the handler in Lambda's event shape; the World's own pollers are not started.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from flowcraft.aws_world import AwsWorld, AwsWorldConfig, lambda_handler
from flowcraft.core.world import QueueMessage, Redeliver


def _record(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": message["Attributes"]["ApproximateReceiveCount"]},
        "eventSource": "aws:sqs",
    }


async def _receive(world: AwsWorld, url: str, count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        got = await world.aws.sqs(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        messages += got.get("Messages", [])
        if len(messages) >= count:
            return messages
    raise AssertionError(f"expected {count} messages, got {len(messages)}")


async def test_records_are_delivered_and_failures_reported(aws_endpoint_url: str) -> None:
    config = AwsWorldConfig.for_prefix(
        f"fl-{uuid.uuid4().hex[:10]}", endpoint_url=aws_endpoint_url, poll_wait_seconds=1
    )
    world = AwsWorld(config)
    await world.ensure_infrastructure()
    seen: list[tuple[QueueMessage, str, int]] = []

    async def handle(
        message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        seen.append((message, message_id, attempt))
        if message.get("fail"):
            raise RuntimeError("failed on purpose")
        return Redeliver(delay_seconds=0) if message.get("again") else None

    world.register_handler("lam_", handle)
    try:
        ok = await world.queue("lam_1", {"n": 1})
        bad = await world.queue("lam_1", {"fail": True})
        again = await world.queue("lam_1", {"again": True})
        url = (await world.aws.sqs("get_queue_url", QueueName=f"{config.step_queue}"))["QueueUrl"]
        messages = await _receive(world, url, 3)
        ids = {json.loads(m["Body"])["id"]: m["MessageId"] for m in messages}
        event = {"Records": [_record(m) for m in messages]}

        answer = await asyncio.to_thread(lambda_handler(world), event, None)

        assert answer == {"batchItemFailures": [{"itemIdentifier": ids[bad]}]}
        assert sorted((i, a) for _, i, a in seen) == sorted([(ok, 1), (bad, 1), (again, 1)])
        (redelivery,) = await _receive(world, url, 1)
        assert (json.loads(redelivery["Body"])["id"], json.loads(redelivery["Body"])["a"]) == (
            again,
            1,
        )
    finally:
        await world.drop_infrastructure()
        await world.aclose()
