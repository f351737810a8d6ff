"""flowcraft-kafka: Flowcraft on Apache Kafka, Cassandra and Redis.

Status: layout only. The distribution is published so that its dependency set (confluent-kafka,
cassandra-driver, redis) and its place in the ``flowcraft`` namespace are fixed; the adapter
itself (`KafkaAdapter`, `CassandraContext`) arrives with its own issue. Until then this package
exports only its version, on purpose: no placeholder classes that pretend to work.
"""

from flowcraft.kafka.__about__ import __version__

__all__ = ["__version__"]
