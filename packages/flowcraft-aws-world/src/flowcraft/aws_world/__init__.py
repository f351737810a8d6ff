"""flowcraft-aws-world: the World on DynamoDB, SQS and S3.

An event-sourced durable-execution backend (the Workflow DevKit 4.1 World contract, as
``flowcraft.core.world.World``): runs, steps, hooks and waits are the fold of one dense,
ordered event log per run in DynamoDB, each ``events_create`` one ``TransactWriteItems``
decided by core's pure rules; workflow and step queues on SQS; streams ordered in DynamoDB
with their bytes inline or in S3; large payloads in S3.

Example::

    from flowcraft.aws_world import create_world

    world = create_world()               # WORKFLOW_AWS_* variables
    await world.ensure_infrastructure()  # tables, indexes, queues, DLQs, bucket
    async with world:                    # queue consumers
        ...

Blueprints run on it as backend ``aws-world`` (``flowcraft worker --backend aws-world``).
"""

from flowcraft.aws_world.__about__ import __version__
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._errors import AwsWorldConfigError
from flowcraft.aws_world._lambda import handle_sqs_event, lambda_handler
from flowcraft.aws_world._world import AwsWorld, create_world

__all__ = [
    "AwsWorld",
    "AwsWorldConfig",
    "AwsWorldConfigError",
    "__version__",
    "create_world",
    "handle_sqs_event",
    "lambda_handler",
]
