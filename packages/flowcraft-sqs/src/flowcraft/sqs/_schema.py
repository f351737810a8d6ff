"""Names and definitions of the adapter's tables and queues, and their idempotent creation.

Tables (DynamoDB, on-demand billing):

* **contexts** (``context_table_name``): everything of a run, one item per piece, partition
  key ``runId`` (S), sort key ``sk`` (S). Sort keys: ``h`` the header (version, header JSON,
  pending journal), ``r#<record key>`` records, ``c#<context key>`` context values,
  ``o#<message id>`` outbox messages, ``a#<attempt>`` attempt leases and outcomes, ``j#...``
  journal items of a large save, ``b#<sha256>#<n>`` content-addressed chunks of large
  values. Idempotency keys are items of their own (``runId`` = ``idem#<key>``), offloaded
  message bodies too (``runId`` = ``body#<id>``). Local secondary index ``by_version``
  (``runId``, ``ver`` N) serves loads of what changed since a version.
* **statuses** (``status_table_name``): one item per run (``runId``): the run record
  (blueprint, status, input, output, errors, parent, idempotency key, ``created``,
  ``updated``). Global secondary indexes ``by_status`` (``status``, ``created``) for
  ``list_runs`` and ``by_activity`` (``active``, ``updated``; ``active`` exists only while
  the run is unfinished: a sparse index) for ``stalled_runs``.
* **coordination** (``coordination_table_name``): ``coordinationKey`` (S); TTL on ``ttl`` (N).

Queues (SQS standard): ``<namespace>-jobs`` with a redrive policy to ``<namespace>-dead``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from flowcraft.core.errors import PermanentBackendError
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._errors import error_code

__all__ = ["Names", "drop_tables", "ensure_queues", "ensure_tables", "store_tables"]

#: Seconds an SQS message is kept (the service maximum: 14 days).
RETENTION = 1_209_600


@dataclass(frozen=True, slots=True, kw_only=True)
class Names:
    """Table and queue names of one namespace."""

    contexts: str
    statuses: str
    coordination: str
    jobs_queue: str
    dead_queue: str

    @classmethod
    def of(cls, namespace: str) -> Names:
        """The default names of ``namespace`` (``flowcraft`` gives the seed's names)."""
        return cls(
            contexts=f"{namespace}-contexts",
            statuses=f"{namespace}-statuses",
            coordination=f"{namespace}-coordination",
            jobs_queue=f"{namespace}-jobs",
            dead_queue=f"{namespace}-dead",
        )


def _attribute(name: str, kind: str) -> dict[str, str]:
    return {"AttributeName": name, "AttributeType": kind}


def _key(name: str, kind: str) -> dict[str, str]:
    return {"AttributeName": name, "KeyType": kind}


def table_definitions(names: Names) -> list[dict[str, Any]]:
    """``CreateTable`` requests of the three tables (also what the README shows)."""
    contexts = {
        "TableName": names.contexts,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            _attribute("runId", "S"),
            _attribute("sk", "S"),
            _attribute("ver", "N"),
        ],
        "KeySchema": [_key("runId", "HASH"), _key("sk", "RANGE")],
        "LocalSecondaryIndexes": [
            {
                "IndexName": "by_version",
                "KeySchema": [_key("runId", "HASH"), _key("ver", "RANGE")],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }
    statuses = {
        "TableName": names.statuses,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            _attribute("runId", "S"),
            _attribute("status", "S"),
            _attribute("created", "S"),
            _attribute("active", "S"),
            _attribute("updated", "N"),
        ],
        "KeySchema": [_key("runId", "HASH")],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_status",
                "KeySchema": [_key("status", "HASH"), _key("created", "RANGE")],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "by_activity",
                "KeySchema": [_key("active", "HASH"), _key("updated", "RANGE")],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }
    coordination = {
        "TableName": names.coordination,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [_attribute("coordinationKey", "S")],
        "KeySchema": [_key("coordinationKey", "HASH")],
    }
    return [contexts, statuses, coordination]


async def ensure_tables(aws: Aws, names: Names) -> None:
    """Create the tables (and the coordination table's TTL) unless they exist; wait for them."""
    await asyncio.gather(*(_ensure_table(aws, table) for table in table_definitions(names)))
    await _enable_ttl(aws, names.contexts, "expires_at")
    await _enable_ttl(aws, names.coordination, "ttl")


async def store_tables(aws: Aws, contexts: str, statuses: str) -> None:
    """Create the run store's two tables unless they exist (``DynamoDbContext.ensure_schema``)."""
    names = Names(contexts=contexts, statuses=statuses, coordination="", jobs_queue="",
                  dead_queue="")  # fmt: skip
    await asyncio.gather(*(_ensure_table(aws, t) for t in table_definitions(names)[:2]))
    await _enable_ttl(aws, contexts, "expires_at")


async def _enable_ttl(aws: Aws, table: str, attribute: str) -> None:
    try:
        await aws.dynamodb(
            "update_time_to_live",
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
    except PermanentBackendError as exc:
        if "already enabled" not in str(exc).lower():
            raise


async def _ensure_table(aws: Aws, definition: dict[str, Any]) -> None:
    name = definition["TableName"]
    try:
        await aws.dynamodb("create_table", **definition)
    except PermanentBackendError as exc:
        if error_code(exc.__cause__ or exc) != "ResourceInUseException":
            raise
    for _ in range(600):  # moto: at once; AWS: seconds
        described = await aws.dynamodb("describe_table", TableName=name)
        table = described["Table"]
        indexes = table.get("GlobalSecondaryIndexes", [])
        if table["TableStatus"] == "ACTIVE" and all(
            index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
        ):
            return
        await asyncio.sleep(0.5)
    raise PermanentBackendError(f"DynamoDB table {name} did not become ACTIVE")


async def drop_tables(aws: Aws, names: Names) -> None:
    """Delete the three tables (tests). Missing ones are fine."""
    for name in (names.contexts, names.statuses, names.coordination):
        try:
            await aws.dynamodb("delete_table", TableName=name)
        except PermanentBackendError as exc:
            if error_code(exc.__cause__ or exc) != "ResourceNotFoundException":
                raise


async def ensure_queues(
    aws: Aws, names: Names, *, visibility_timeout: int, max_receive_count: int
) -> tuple[str, str]:
    """Create the job queue and its dead-letter queue unless they exist: their URLs."""
    dead = await aws.sqs(
        "create_queue",
        QueueName=names.dead_queue,
        Attributes={"MessageRetentionPeriod": str(RETENTION)},
    )
    dead_url = str(dead["QueueUrl"])
    arn = await aws.sqs("get_queue_attributes", QueueUrl=dead_url, AttributeNames=["QueueArn"])
    redrive = json.dumps(
        {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": max_receive_count}
    )
    attributes = {
        "VisibilityTimeout": str(visibility_timeout),
        "MessageRetentionPeriod": str(RETENTION),
        "ReceiveMessageWaitTimeSeconds": "0",
        "RedrivePolicy": redrive,
    }
    try:
        jobs = await aws.sqs("create_queue", QueueName=names.jobs_queue, Attributes=attributes)
    except PermanentBackendError as exc:
        if error_code(exc.__cause__ or exc) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        found = await aws.sqs("get_queue_url", QueueName=names.jobs_queue)
        jobs = {"QueueUrl": found["QueueUrl"]}
        await aws.sqs("set_queue_attributes", QueueUrl=jobs["QueueUrl"], Attributes=attributes)
    return str(jobs["QueueUrl"]), dead_url


async def drop_queues(aws: Aws, urls: tuple[str, ...]) -> None:
    """Delete queues (tests). Missing ones are fine."""
    for url in urls:
        try:
            await aws.sqs("delete_queue", QueueUrl=url)
        except PermanentBackendError as exc:
            if "NonExistentQueue" not in error_code(exc.__cause__ or exc):
                raise
