"""AWS Lambda entry point: SQS-triggered workers instead of (or beside) polling consumers.

Point an SQS event source mapping at the workflow and step queues with
``FunctionResponseTypes: ["ReportBatchItemFailures"]``; the function's module builds its World
once (outside the handler, so clients are reused between invocations) and registers its
handlers::

    world = create_world()
    world.register_handler("__wkf_workflow_", workflow_handler)
    world.register_handler("__wkf_step_", step_handler)
    handler = lambda_handler(world)          # the function's handler: module.handler

Each record is delivered like a polled message (the same delays, redelivery and attempt
counting, see ``_queue``); records whose handler raised are reported as batch item failures,
so SQS makes them visible again after the queue's visibility timeout and moves them to the
DLQ after ``maxReceiveCount``. Set the function's timeout below the queue's visibility
timeout: Lambda cannot extend it while a handler runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from flowcraft.aws_world._world import AwsWorld

LambdaHandler = Callable[[Mapping[str, Any], object], dict[str, Any]]


async def handle_sqs_event(world: AwsWorld, event: Mapping[str, Any]) -> dict[str, Any]:
    """Deliver every record of an SQS event; the records to retry (``batchItemFailures``)."""
    records = list(event.get("Records", []))
    settled = await asyncio.gather(*(world.deliver_record(record) for record in records))
    failures = [
        {"itemIdentifier": record["messageId"]}
        for record, done in zip(records, settled, strict=True)
        if not done
    ]
    return {"batchItemFailures": failures}


def lambda_handler(world: AwsWorld) -> LambdaHandler:
    """A Lambda handler ``(event, context)`` delivering SQS events to ``world``'s handlers."""

    def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
        del context
        return asyncio.run(handle_sqs_event(world, event))

    return handler
