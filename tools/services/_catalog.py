"""The registry of services, in the order ``status`` prints them."""

from __future__ import annotations

from _azurite import Azurite
from _base import Service
from _cassandra import Cassandra
from _cosmos import Cosmos
from _kafka import Kafka
from _moto import Moto
from _postgres import Postgres
from _rabbitmq import RabbitMq
from _redis import Redis

SERVICES: dict[str, type[Service]] = {
    "redis": Redis,
    "postgres": Postgres,
    "rabbitmq": RabbitMq,
    "moto": Moto,
    "azurite": Azurite,
    "cosmos": Cosmos,
    "kafka": Kafka,
    "cassandra": Cassandra,
}
