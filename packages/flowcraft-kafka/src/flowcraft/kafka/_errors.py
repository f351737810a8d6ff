"""Driver errors translated at the port edge: confluent-kafka and cassandra-driver in.

Class tree of what callers see (from ``flowcraft.core.errors``)::

    BackendError
    ├── TransientBackendError   a retry may help: broker or node down, timeouts, overload,
    │                           a lost connection, a coordinator moving, Cassandra's
    │                           Unavailable / Timeout / Overloaded / CAS contention
    └── PermanentBackendError   it will not: authentication, authorisation, a missing topic
                                or keyspace, invalid requests and configuration, a message
                                too large, CQL syntax

Kafka reports every failure as a ``KafkaError`` (inside ``KafkaException`` when raised, or in a
delivery report); its ``retriable()`` flag and a short list of codes decide. Cassandra raises
one class per failure; :data:`CASSANDRA_TRANSIENT` and :data:`CASSANDRA_PERMANENT` cover every
exception class the driver defines (a test walks the driver's modules to prove it). Messages
keep the driver's text and add the operation; credentials never appear in either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import cassandra
import cassandra.cluster
import cassandra.connection
import cassandra.metadata
import cassandra.pool
import cassandra.protocol
import cassandra.query
import cassandra.segment
from confluent_kafka import KafkaError, KafkaException
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError

__all__ = [
    "CASSANDRA_PERMANENT",
    "CASSANDRA_TRANSIENT",
    "from_cassandra",
    "from_kafka_error",
    "kafka_errors",
]

#: Kafka error codes that are worth retrying although librdkafka does not flag them retriable.
_KAFKA_TRANSIENT_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._WAIT_COORD,
        KafkaError._DESTROY,
        KafkaError._RESOLVE,
        KafkaError._QUEUE_FULL,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # metadata not propagated yet, right after creation
    }
)

#: cassandra-driver exceptions after which a retry may succeed.
CASSANDRA_TRANSIENT: tuple[type[BaseException], ...] = (
    cassandra.Unavailable,
    cassandra.Timeout,  # ReadTimeout, WriteTimeout (incl. CAS contention timeouts)
    cassandra.CoordinationFailure,  # ReadFailure, WriteFailure
    cassandra.OperationTimedOut,
    cassandra.cluster.NoHostAvailable,
    cassandra.connection.ConnectionException,  # incl. ConnectionShutdown
    cassandra.connection.ConnectionBusy,
    cassandra.protocol.OverloadedErrorMessage,
    cassandra.protocol.IsBootstrappingErrorMessage,
    cassandra.protocol.ServerError,
    cassandra.protocol.TruncateError,
    cassandra.protocol.UnavailableErrorMessage,
    cassandra.protocol.ReadTimeoutErrorMessage,
    cassandra.protocol.WriteTimeoutErrorMessage,
    cassandra.protocol.ReadFailureMessage,
    cassandra.protocol.WriteFailureMessage,
    cassandra.pool.NoConnectionsAvailable,
    cassandra.cluster.QueryExhausted,
    cassandra.segment.CrcException,
    OSError,
    TimeoutError,
)

#: cassandra-driver exceptions that a retry will not cure.
CASSANDRA_PERMANENT: tuple[type[BaseException], ...] = (
    cassandra.AuthenticationFailed,
    cassandra.InvalidRequest,
    cassandra.Unauthorized,
    cassandra.AlreadyExists,
    cassandra.FunctionFailure,
    cassandra.UnsupportedOperation,
    cassandra.DriverException,
    cassandra.protocol.ErrorMessage,  # SyntaxException, ConfigurationException, ...
    cassandra.query.TraceUnavailable,
    cassandra.cluster.UserTypeDoesNotExist,
    cassandra.connection.ProtocolError,
    cassandra.protocol.InternalError,
    cassandra.protocol.NotSupportedError,
    cassandra.metadata.NoMurmur3,
    cassandra.DependencyException,
)


def from_kafka_error(error: KafkaError, operation: str) -> BackendError:
    """The flowcraft error for a Kafka error (a delivery report's, or a raised one's)."""
    transient = error.retriable() or error.code() in _KAFKA_TRANSIENT_CODES
    kind = TransientBackendError if transient else PermanentBackendError
    return kind(f"Kafka {operation}: {error.str()} ({error.name()})")


@contextmanager
def kafka_errors(operation: str) -> Iterator[None]:
    """Translate whatever confluent-kafka raises inside the block."""
    try:
        yield
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError):
            raise from_kafka_error(error, operation) from exc
        raise TransientBackendError(f"Kafka {operation}: {exc}") from exc
    except (BufferError, RuntimeError) as exc:  # local queue full; a closed handle
        raise TransientBackendError(f"Kafka {operation}: {exc}") from exc
    except (TypeError, ValueError) as exc:  # a configuration librdkafka refuses
        raise PermanentBackendError(f"Kafka {operation}: {exc}") from exc


def from_cassandra(exc: BaseException, operation: str) -> BaseException:
    """The flowcraft error for a cassandra-driver exception (anything else as it is)."""
    if isinstance(exc, BackendError | asyncio.CancelledError):
        return exc
    if isinstance(exc, CASSANDRA_TRANSIENT):
        return TransientBackendError(f"Cassandra {operation}: {type(exc).__name__}: {exc}")
    if isinstance(exc, CASSANDRA_PERMANENT):
        return PermanentBackendError(f"Cassandra {operation}: {type(exc).__name__}: {exc}")
    return exc
