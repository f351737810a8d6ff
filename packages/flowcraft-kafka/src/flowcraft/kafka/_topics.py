"""The topics of a namespace, created idempotently with the AdminClient.

For jobs topic ``T`` (``topic_name``, default ``flowcraft-jobs``): ``T`` itself, the
dead-letter topic ``T.dead`` and one delay topic per tier, ``T.delay-0`` ... ``T.delay-5``
(:mod:`flowcraft.kafka._delays`). Every topic gets ``partitions`` partitions (the jobs topic's
parallelism: one partition is consumed by one process at a time) and ``replication_factor``
replicas with ``min.insync.replicas`` of ``min(2, replication_factor)``, so an ``acks=all``
write survives a broker. ``retention.ms`` (7 days by default) bounds how long a message may
wait for a consumer: workers down for longer lose jobs (the reconciler re-sends what runs
need, from the store's outboxes and stalled runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from flowcraft.kafka._delays import TIERS
from flowcraft.kafka._errors import kafka_errors

__all__ = ["TopicNames", "delete_topics", "ensure_topics"]

_ADMIN_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topics of one jobs topic name."""

    jobs: str

    @property
    def dead(self) -> str:
        """The dead-letter topic."""
        return f"{self.jobs}.dead"

    @property
    def delays(self) -> tuple[str, ...]:
        """The delay topics, one per tier."""
        return tuple(f"{self.jobs}.delay-{i}" for i in range(len(TIERS)))

    @property
    def all(self) -> tuple[str, ...]:
        """Every topic, jobs first."""
        return (self.jobs, self.dead, *self.delays)


def _admin(config: Mapping[str, Any]) -> AdminClient:
    allowed = {k: v for k, v in config.items() if not k.startswith(("enable.idempotence", "acks"))}
    with kafka_errors("create admin client"):
        return AdminClient(allowed)


async def ensure_topics(
    config: Mapping[str, Any], names: TopicNames, *, partitions: int,
    replication_factor: int = 1, retention_ms: int = 7 * 24 * 3600 * 1000,
) -> None:  # fmt: skip
    """Create the topics that do not exist (existing ones are left as they are)."""
    settings = {"retention.ms": str(retention_ms),
                "min.insync.replicas": str(min(2, replication_factor))}  # fmt: skip
    topics = [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor,
                       config=settings) for t in names.all]  # fmt: skip
    await asyncio.to_thread(_create, _admin(config), topics)


def _create(admin: AdminClient, topics: Sequence[NewTopic]) -> None:
    with kafka_errors("create topics"):
        for future in admin.create_topics(list(topics), request_timeout=_ADMIN_TIMEOUT).values():
            try:
                future.result(timeout=_ADMIN_TIMEOUT)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise


async def delete_topics(config: Mapping[str, Any], names: TopicNames) -> None:
    """Delete the namespace's topics (tests); missing ones are fine."""
    await asyncio.to_thread(_delete, _admin(config), names.all)


def _delete(admin: AdminClient, topics: Sequence[str]) -> None:
    with kafka_errors("delete topics"):
        for future in admin.delete_topics(list(topics), request_timeout=_ADMIN_TIMEOUT).values():
            try:
                future.result(timeout=_ADMIN_TIMEOUT)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
