"""Every driver exception is translated: Kafka errors by code, Cassandra's by class."""

import inspect
import types

import cassandra
import cassandra.cluster
import cassandra.connection
import cassandra.metadata
import cassandra.pool
import cassandra.protocol
import cassandra.query
import cassandra.segment
import pytest
from confluent_kafka import KafkaError, KafkaException
from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.kafka._errors import (
    CASSANDRA_PERMANENT,
    CASSANDRA_TRANSIENT,
    from_cassandra,
    kafka_errors,
)

_MODULES: tuple[types.ModuleType, ...] = (
    cassandra, cassandra.cluster, cassandra.connection, cassandra.metadata, cassandra.pool,
    cassandra.protocol, cassandra.query, cassandra.segment,
)  # fmt: skip


def _driver_exceptions() -> list[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module in _MODULES:
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("cassandra")
            ):
                found.add(value)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


@pytest.mark.parametrize("exc_class", _driver_exceptions(), ids=lambda c: c.__qualname__)
def test_every_cassandra_exception_class_is_mapped(exc_class: type[BaseException]) -> None:
    assert issubclass(exc_class, CASSANDRA_TRANSIENT + CASSANDRA_PERMANENT)


def test_timeouts_are_transient_and_invalid_requests_permanent() -> None:
    assert isinstance(from_cassandra(cassandra.OperationTimedOut(), "x"), TransientBackendError)
    assert isinstance(from_cassandra(cassandra.InvalidRequest("bad"), "x"), PermanentBackendError)
    unrelated = KeyError("mine")
    assert from_cassandra(unrelated, "x") is unrelated


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (KafkaError._TRANSPORT, TransientBackendError),
        (KafkaError._ALL_BROKERS_DOWN, TransientBackendError),
        (KafkaError.NOT_COORDINATOR, TransientBackendError),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, PermanentBackendError),
        (KafkaError.MSG_SIZE_TOO_LARGE, PermanentBackendError),
        (KafkaError._INVALID_ARG, PermanentBackendError),
    ],
)
def test_kafka_errors_by_code(code: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as raised, kafka_errors("produce"):
        raise KafkaException(KafkaError(code))
    assert isinstance(raised.value.__cause__, KafkaException)
    assert "Kafka produce" in str(raised.value)


def test_a_full_local_queue_is_transient() -> None:
    with pytest.raises(TransientBackendError), kafka_errors("produce"):
        raise BufferError("Local: Queue full")
