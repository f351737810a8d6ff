"""Driver errors translated at the port edge: psycopg and pika in, flowcraft errors out.

Every call into psycopg or pika is wrapped by ``postgres_errors(...)`` or ``amqp_errors(...)``
(context managers); they re-raise the driver's exception as
``flowcraft.core.errors.TransientBackendError`` (retry may help: connection lost, timeout,
broker shutting down, serialization failure) or ``PermanentBackendError`` (authentication,
access, schema or protocol problems), chained with ``from exc`` and with the original message
kept. The classification is two pure functions, ``classify_postgres`` and ``classify_amqp``,
that unit tests check against every exception class the drivers define.

PostgreSQL classes of SQLSTATE treated as transient: 08 (connection exception), 40
(transaction rollback: serialization failure, deadlock), 53 (insufficient resources), 57
(operator intervention: admin shutdown, query cancelled), 58 (system error). Without a
SQLSTATE, ``OperationalError`` and ``InterfaceError`` (connection gone or refused) and the pool's
``PoolTimeout``/``TooManyRequests`` are transient, unless the message says authentication
failed. Everything else (28 invalid authorization, 42 syntax/undefined table, 23 integrity,
data errors) is permanent.

AMQP: authentication, access refusal, incompatible protocol, malformed frames and broker
refusals with reply codes 403 (access refused), 404 (not found), 406 (precondition failed,
e.g. a queue re-declared with other arguments; except a consumer-ack timeout) and 530 (not
allowed) are permanent; lost connections, heartbeats, closed channels or connections (also
broker shutdown, reply code 320) and nacked publishes are transient. ``OSError`` and
``TimeoutError`` raised around driver calls are transient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pika.exceptions as amqp_exc
import psycopg
import psycopg_pool
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError

__all__ = [
    "amqp_errors",
    "classify_amqp",
    "classify_postgres",
    "postgres_errors",
]

_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_AUTH_WORDS = ("authentication", "password", "role ", "permission denied")
_PERMANENT_REPLY_CODES = frozenset({403, 404, 406, 530})
_PERMANENT_AMQP: tuple[type[BaseException], ...] = (
    amqp_exc.ProbableAuthenticationError,
    amqp_exc.ProbableAccessDeniedError,
    amqp_exc.AuthenticationError,
    amqp_exc.IncompatibleProtocolError,
    amqp_exc.ProtocolSyntaxError,
    amqp_exc.MethodNotImplemented,
    amqp_exc.ShortStringTooLong,
    amqp_exc.InvalidChannelNumber,
    amqp_exc.DuplicateConsumerTag,
    amqp_exc.UnroutableError,
    amqp_exc.ChannelError,
    amqp_exc.ReentrancyError,
)


def classify_postgres(exc: BaseException) -> type[BackendError]:
    """Which backend error a psycopg (or psycopg_pool) exception becomes."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return _by_sqlstate(sqlstate)
    if isinstance(exc, psycopg_pool.PoolClosed):
        return PermanentBackendError
    transient_types = (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError)
    if isinstance(exc, transient_types) and not _mentions_auth(exc):
        return TransientBackendError
    return PermanentBackendError


def _by_sqlstate(sqlstate: str) -> type[BackendError]:
    if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES:
        return TransientBackendError
    return PermanentBackendError


def _mentions_auth(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _AUTH_WORDS)


def classify_amqp(exc: BaseException) -> type[BackendError]:
    """Which backend error a pika exception (or a socket error around it) becomes."""
    if isinstance(exc, _PERMANENT_AMQP):
        return PermanentBackendError
    reply_code = getattr(exc, "reply_code", None)
    if isinstance(reply_code, int) and reply_code in _PERMANENT_REPLY_CODES:
        return _refusal(exc, reply_code)
    return TransientBackendError


def _refusal(exc: BaseException, reply_code: int) -> type[BackendError]:
    if reply_code == 406 and "timeout" in str(exc).lower():
        return TransientBackendError  # consumer ack timeout: the delivery is requeued
    return PermanentBackendError


def _translated(exc: BaseException, kind: type[BackendError], what: str) -> BackendError:
    return kind(f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def postgres_errors(what: str) -> Iterator[None]:
    """Re-raise psycopg errors inside the block as flowcraft backend errors."""
    try:
        yield
    except psycopg_pool.PoolClosed as exc:
        raise PermanentBackendError(f"{what}: the store is closed: {exc}") from exc
    except psycopg.Error as exc:
        raise _translated(exc, classify_postgres(exc), what) from exc
    except (OSError, TimeoutError) as exc:
        raise TransientBackendError(f"{what}: {type(exc).__name__}: {exc}") from exc


@contextmanager
def amqp_errors(what: str) -> Iterator[None]:
    """Re-raise pika errors (and socket errors) inside the block as flowcraft backend errors."""
    try:
        yield
    except (amqp_exc.AMQPError, amqp_exc.ChannelError, amqp_exc.ReentrancyError) as exc:
        raise _translated(exc, classify_amqp(exc), what) from exc
    except (OSError, TimeoutError) as exc:
        raise TransientBackendError(f"{what}: {type(exc).__name__}: {exc}") from exc
