"""flowcraft-kafka: Flowcraft on Apache Kafka (jobs), Apache Cassandra (state) and Redis.

See the package README for the design (a classic consumer group with contiguous-offset
commits, delay topics, a dead-letter topic; one Cassandra partition per run, saves as one
conditional batch), the topics and tables it creates, its guarantees and its limits.
"""

from flowcraft.core.redis import RedisCoordinationStore
from flowcraft.kafka.__about__ import __version__
from flowcraft.kafka._backend import KafkaBackend, create_kafka_reconciler
from flowcraft.kafka._queue import KafkaAdapter
from flowcraft.kafka._store import CassandraContext

__all__ = [
    "CassandraContext",
    "KafkaAdapter",
    "KafkaBackend",
    "RedisCoordinationStore",
    "__version__",
    "create_kafka_reconciler",
]
