"""The World's tables, queues and bucket, and their idempotent creation.

Tables (DynamoDB, on-demand billing; ``S``/``N`` are the key types):

* **runs** (``run_id`` S): one item per run: ``doc`` (the run), ``seq`` (N, the run's last
  event sequence: every event of the run bumps it under a condition, which versions every
  entity of the run), ``ord`` / ``uord`` (N, creation / update time in ns), ``status``,
  ``workflow_name``, ``shard``. Global secondary indexes ``by_created`` (``shard``, ``ord``),
  ``by_name`` (``workflow_name``, ``ord``), ``by_status`` (``status``, ``ord``),
  ``by_updated`` (``shard``, ``uord``).
* **events** (``run_id`` S, ``seq`` N): the log; ``doc`` holds the event.
* **steps** (``run_id`` S, ``sk`` S): steps (``s#<id>``, with ``sord`` N for the sparse local
  index ``by_order``), waits (``w#<id>``), resume-id markers (``r#<resume id>`` → the
  ``hook_received`` sequence) and ``attr_set`` markers (``a#<correlation id>``).
* **hooks** (``pk`` S, ``sk`` S): hooks (``r#<run id>``, ``<hook id>``, with ``hord`` N for
  the local index ``by_order``) and token claims (``t#<token>``, ``#`` → owner), written
  by a conditional put (a GSI cannot enforce uniqueness).
* **streams** (``pk`` S, ``sk`` N): per stream a head (``sk`` 2**62: ``next`` index, ``closed``)
  and batches of chunks (``sk`` = first index); per run a list of names (``l#<run id>``).
* **dedup** (``key`` S): idempotency keys of the queue (``message_id``, ``expires`` (the
  table's TTL attribute), ``sent``).

Queues (SQS standard): the workflow and step queues, each with a redrive policy to
``<name>-dlq``. Bucket: stream chunks and payloads (``payloads/<sha256>``,
``streams/<id>``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flowcraft.aws_world._aws import Aws
from flowcraft.aws_world._config import AwsWorldConfig, queue_name_of
from flowcraft.aws_world._errors import error_code
from flowcraft.core.errors import PermanentBackendError

#: SQS message retention (the service maximum, 14 days).
RETENTION = 1_209_600

#: Large queue messages live in S3 as long as SQS could still deliver them.
MESSAGES_EXPIRE = {
    "ID": "flowcraft-expire-queue-messages",
    "Filter": {"Prefix": "messages/"},
    "Status": "Enabled",
    "Expiration": {"Days": 14},
}


def _keys(*keys: tuple[str, str]) -> list[dict[str, str]]:
    return [{"AttributeName": name, "KeyType": kind} for name, kind in keys]


def _index(name: str, hash_key: str, range_key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": _keys((hash_key, "HASH"), (range_key, "RANGE")),
        "Projection": {"ProjectionType": "ALL"},
    }


def table_definitions(config: AwsWorldConfig) -> list[dict[str, Any]]:
    """``CreateTable`` requests for every table (also shown in the README)."""

    def table(name: str, attrs: dict[str, str], key: list[str], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        kinds = ["HASH", "RANGE"]
        return {
            "TableName": name,
            "AttributeDefinitions": [
                {"AttributeName": a, "AttributeType": t} for a, t in attrs.items()
            ],
            "KeySchema": _keys(*zip(key, kinds, strict=False)),
            "BillingMode": "PAY_PER_REQUEST",
            **extra,
        }

    runs_attrs = {
        "run_id": "S",
        "shard": "S",
        "ord": "N",
        "uord": "N",
        "status": "S",
        "workflow_name": "S",
    }
    return [
        table(
            config.runs_table,
            runs_attrs,
            ["run_id"],
            GlobalSecondaryIndexes=[
                _index("by_created", "shard", "ord"),
                _index("by_name", "workflow_name", "ord"),
                _index("by_status", "status", "ord"),
                _index("by_updated", "shard", "uord"),
            ],
        ),
        table(config.events_table, {"run_id": "S", "seq": "N"}, ["run_id", "seq"]),
        table(
            config.steps_table,
            {"run_id": "S", "sk": "S", "sord": "N"},
            ["run_id", "sk"],
            LocalSecondaryIndexes=[_index("by_order", "run_id", "sord")],
        ),
        table(
            config.hooks_table,
            {"pk": "S", "sk": "S", "hord": "N"},
            ["pk", "sk"],
            LocalSecondaryIndexes=[_index("by_order", "pk", "hord")],
        ),
        table(config.streams_table, {"pk": "S", "sk": "N"}, ["pk", "sk"]),
        table(config.dedup_table, {"key": "S"}, ["key"]),
    ]


def queue_attributes(config: AwsWorldConfig, dlq_arn: str) -> dict[str, str]:
    """``CreateQueue`` attributes of the workflow and step queues."""
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(config.max_receive_count)}
    return {
        "VisibilityTimeout": str(config.visibility_timeout),
        "MessageRetentionPeriod": str(RETENTION),
        "ReceiveMessageWaitTimeSeconds": str(config.poll_wait_seconds),
        "RedrivePolicy": json.dumps(redrive),
    }


async def ensure_tables(aws: Aws, config: AwsWorldConfig) -> None:
    """Create every table that does not exist; wait until all are active."""
    for definition in table_definitions(config):
        try:
            await aws.dynamodb("create_table", **definition)
        except PermanentBackendError as exc:
            if "ResourceInUseException" not in str(exc):
                raise
    for name in config.tables:
        await _wait_active(aws, name)
    await _dedup_ttl(aws, config.dedup_table)


async def _dedup_ttl(aws: Aws, table: str) -> None:
    """Let DynamoDB delete expired idempotency keys (reads ignore them anyway)."""
    described = await aws.dynamodb("describe_time_to_live", TableName=table)
    if described.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") in (
        "ENABLED",
        "ENABLING",
    ):
        return
    await aws.dynamodb(
        "update_time_to_live",
        TableName=table,
        TimeToLiveSpecification={"AttributeName": "expires", "Enabled": True},
    )


async def _wait_active(aws: Aws, name: str) -> None:
    for _ in range(600):
        table = (await aws.dynamodb("describe_table", TableName=name))["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table["TableStatus"] == "ACTIVE" and all(i["IndexStatus"] == "ACTIVE" for i in indexes):
            return
        await asyncio.sleep(0.5)
    raise PermanentBackendError(f"table {name!r} did not become active within 300 s")


async def ensure_queue(aws: Aws, config: AwsWorldConfig, queue: str) -> str:
    """Create ``queue`` (URL or name) and its DLQ if missing; its URL."""
    name = queue_name_of(queue)
    dlq = await _create_queue(aws, f"{name}-dlq", {"MessageRetentionPeriod": str(RETENTION)})
    arn = (await aws.sqs("get_queue_attributes", QueueUrl=dlq, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    return await _create_queue(aws, name, queue_attributes(config, arn))


async def _create_queue(aws: Aws, name: str, attributes: dict[str, str]) -> str:
    try:
        url: str = (await aws.sqs("create_queue", QueueName=name, Attributes=attributes))[
            "QueueUrl"
        ]
    except PermanentBackendError as exc:
        if "QueueAlreadyExists" not in str(exc) and "QueueNameExists" not in str(exc):
            raise
        url = (await aws.sqs("get_queue_url", QueueName=name))["QueueUrl"]
    return url


async def queue_url(aws: Aws, queue: str) -> str:
    """The URL of ``queue`` (given as a URL, or looked up by name)."""
    if queue.startswith(("http://", "https://")):
        return queue
    url: str = (await aws.sqs("get_queue_url", QueueName=queue))["QueueUrl"]
    return url


async def ensure_bucket(aws: Aws, config: AwsWorldConfig) -> None:
    """Create the bucket if missing."""
    params: dict[str, Any] = {"Bucket": config.stream_bucket}
    if aws.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    try:
        await aws.s3("create_bucket", **params)
    except PermanentBackendError as exc:
        if "BucketAlreadyOwnedByYou" not in str(exc):
            raise
    await aws.s3(
        "put_bucket_lifecycle_configuration",
        Bucket=config.stream_bucket,
        LifecycleConfiguration={"Rules": [MESSAGES_EXPIRE]},
    )


async def ensure_infrastructure(aws: Aws, config: AwsWorldConfig) -> tuple[str, str]:
    """Tables, indexes, bucket, queues and DLQs (idempotent); the two queue URLs."""
    await ensure_tables(aws, config)
    await ensure_bucket(aws, config)
    workflow = await ensure_queue(aws, config, config.workflow_queue)
    step = await ensure_queue(aws, config, config.step_queue)
    return workflow, step


async def drop_infrastructure(aws: Aws, config: AwsWorldConfig) -> None:
    """Delete every table, queue, DLQ and the bucket with its objects (tests, teardown)."""
    for name in config.tables:
        await _ignore_missing(aws.dynamodb("delete_table", TableName=name))
    for queue in (config.workflow_queue, config.step_queue):
        for name in (queue_name_of(queue), f"{queue_name_of(queue)}-dlq"):
            try:
                url = await queue_url(aws, name)
            except PermanentBackendError:
                continue
            await _ignore_missing(aws.sqs("delete_queue", QueueUrl=url))
    await _empty_bucket(aws, config.stream_bucket)


async def _empty_bucket(aws: Aws, bucket: str) -> None:
    try:
        while True:
            listed = await aws.s3("list_objects_v2", Bucket=bucket)
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if not keys:
                break
            await aws.s3("delete_objects", Bucket=bucket, Delete={"Objects": keys})
        await aws.s3("delete_bucket", Bucket=bucket)
    except PermanentBackendError as exc:
        if "NoSuchBucket" not in str(exc):
            raise


async def _ignore_missing(call: Any) -> None:  # noqa: ANN401 (an awaitable)
    try:
        await call
    except PermanentBackendError as exc:
        if "NonExistent" not in str(exc) and "ResourceNotFound" not in str(exc):
            raise


__all__ = [
    "drop_infrastructure",
    "ensure_infrastructure",
    "error_code",
    "queue_url",
    "table_definitions",
]
