"""flowcraft-rabbitmq: Flowcraft on RabbitMQ, PostgreSQL and Redis.

Status: layout only. The distribution is published so that its dependency set (pika,
psycopg[binary], redis) and its place in the ``flowcraft`` namespace are fixed; the adapter
itself (`RabbitMqAdapter`, `PostgresContext`, `create_rabbitmq_reconciler`) arrives with its own
issue. Until then this package exports only its version, on purpose: no placeholder classes that
pretend to work.
"""

from flowcraft.rabbitmq.__about__ import __version__

__all__ = ["__version__"]
