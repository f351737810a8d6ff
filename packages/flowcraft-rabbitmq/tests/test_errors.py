"""Driver errors are translated completely: every class the drivers define maps somewhere."""

import inspect
from collections.abc import Iterator

import pika.exceptions as amqp_exc
import psycopg
import psycopg.errors
import psycopg_pool
import pytest
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.rabbitmq._errors import (
    amqp_errors,
    classify_amqp,
    classify_postgres,
    postgres_errors,
)


def subclasses(root: type[BaseException]) -> Iterator[type[BaseException]]:
    yield root
    for sub in root.__subclasses__():
        yield from subclasses(sub)


def pika_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(amqp_exc, inspect.isclass)
        if issubclass(cls, BaseException)
    ]


def psycopg_classes() -> list[type[BaseException]]:
    return sorted(set(subclasses(psycopg.Error)), key=lambda cls: cls.__name__)


def instantiate(cls: type[BaseException]) -> BaseException:
    try:
        return cls("boom")
    except TypeError:
        return cls(320, "boom")


@pytest.mark.parametrize("cls", pika_classes(), ids=lambda cls: cls.__name__)
def test_every_pika_exception_is_translated(cls: type[BaseException]) -> None:
    exc = instantiate(cls)
    with pytest.raises(BackendError) as caught, amqp_errors("op"):
        raise exc
    assert caught.value.__cause__ is exc
    assert str(caught.value).startswith(f"op: {cls.__name__}: ")


@pytest.mark.parametrize("cls", psycopg_classes(), ids=lambda cls: cls.__name__)
def test_every_psycopg_exception_is_translated(cls: type[BaseException]) -> None:
    exc = cls("boom")
    with pytest.raises(BackendError) as caught, postgres_errors("op"):
        raise exc
    assert caught.value.__cause__ is exc
    assert "boom" in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (amqp_exc.StreamLostError("lost"), TransientBackendError),
        (amqp_exc.ConnectionClosedByBroker(320, "CONNECTION_FORCED"), TransientBackendError),
        (amqp_exc.AMQPHeartbeatTimeout("hb"), TransientBackendError),
        (amqp_exc.ChannelWrongStateError("closed"), TransientBackendError),
        (amqp_exc.ProbableAuthenticationError("auth"), PermanentBackendError),
        (amqp_exc.ProbableAccessDeniedError("vhost"), PermanentBackendError),
        (amqp_exc.ConnectionClosedByBroker(403, "ACCESS_REFUSED"), PermanentBackendError),
        (amqp_exc.ChannelClosedByBroker(406, "PRECONDITION_FAILED inequivalent arg"),
         PermanentBackendError),
        (amqp_exc.ChannelClosedByBroker(406, "delivery acknowledgement timeout"),
         TransientBackendError),
        (amqp_exc.ChannelClosedByBroker(404, "NOT_FOUND no queue"), PermanentBackendError),
    ],
)  # fmt: skip
def test_amqp_classification(exc: BaseException, kind: type[BackendError]) -> None:
    assert classify_amqp(exc) is kind


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"),
         TransientBackendError),
        (psycopg.errors.AdminShutdown("terminating connection"), TransientBackendError),
        (psycopg.errors.SerializationFailure("retry"), TransientBackendError),
        (psycopg.errors.DeadlockDetected("deadlock"), TransientBackendError),
        (psycopg_pool.PoolTimeout("no connection"), TransientBackendError),
        (psycopg.OperationalError('FATAL: password authentication failed for user "x"'),
         PermanentBackendError),
        (psycopg.errors.InvalidPassword("bad"), PermanentBackendError),
        (psycopg.errors.UndefinedTable("no table"), PermanentBackendError),
        (psycopg.errors.UniqueViolation("dup"), PermanentBackendError),
        (psycopg_pool.PoolClosed("closed"), PermanentBackendError),
    ],
)  # fmt: skip
def test_postgres_classification(exc: BaseException, kind: type[BackendError]) -> None:
    assert classify_postgres(exc) is kind


def test_socket_errors_are_transient() -> None:
    with pytest.raises(TransientBackendError), amqp_errors("op"):
        raise ConnectionResetError("reset")
    with pytest.raises(TransientBackendError), postgres_errors("op"):
        raise TimeoutError("slow")


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), postgres_errors("op"):
        raise KeyError("not a driver error")
