"""RabbitMqAdapter.close() leaves no socket behind, whatever the adapter was doing.

A worker killed by the conformance harness (``Session.crash_worker``) has its queue closed
while its tasks may still be connecting, or send afterwards (decides under way finish in the
background). Each case below must end with every socket the adapter opened closed as soon as
``close()`` returns: a connection left open, or closed only later by a loop callback, is
collected unclosed once the test's event loop is gone (a ``ResourceWarning``, an error here).
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Awaitable, Callable

import pika
import pytest
from flowcraft.core import ports
from flowcraft.core.errors import BackendError, PermanentBackendError
from flowcraft.rabbitmq import RabbitMqAdapter

#: Pauses before ``close()``, in seconds: spread over a connect's phases (DNS, TCP, AMQP
#: handshake, channel, confirm mode / qos, declare, consume), each hit by some of them.
PAUSES = [0.0, *(i * 0.0005 for i in range(1, 40))]


def _open_broker_sockets(port: int) -> set[int]:
    """Ids of the open TCP sockets to the broker's port, or still connecting (through the GC)."""
    found = set()
    for obj in gc.get_objects():
        if (
            isinstance(obj, socket.socket)
            and obj.fileno() != -1
            and obj.family in (socket.AF_INET, socket.AF_INET6)
        ):
            try:
                peer = obj.getpeername()
            except OSError:
                peer = None
            if (isinstance(peer, tuple) and peer[1] == port) or peer is None:
                found.add(id(obj))
    return found


def _message(i: int) -> ports.Message:
    return ports.Message(id=f"m{i}", body=b"x")


@pytest.fixture
def broker_port(rabbitmq_url: str) -> int:
    return int(pika.URLParameters(rabbitmq_url).port)


async def _assert_close_leaves_no_socket(
    rabbitmq_url: str,
    namespace: str,
    port: int,
    work: Callable[[RabbitMqAdapter], Awaitable[object]],
    *,
    cancel: bool,
) -> None:
    """Start ``work`` on a fresh adapter, close the adapter after each of ``PAUSES``."""
    before = _open_broker_sockets(port)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []  # what pika's loop callbacks raised meanwhile
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        for pause in PAUSES:
            adapter = RabbitMqAdapter(rabbitmq_url, prefix=namespace, connect_timeout=5.0)
            task = asyncio.ensure_future(work(adapter))
            await asyncio.sleep(pause)
            if cancel:
                task.cancel()
            await adapter.close()
            leaked = _open_broker_sockets(port) - before
            assert not leaked, f"close() {pause * 1000:.1f} ms into a connect left a socket open"
            done, _ = await asyncio.wait([task], timeout=10)
            assert done, "the operation did not end after close()"
            if not task.cancelled() and task.exception() is not None:
                assert isinstance(task.exception(), BackendError), repr(task.exception())
            assert not (_open_broker_sockets(port) - before), "a socket was opened after close()"
            await adapter.delete_queues()
    finally:
        loop.set_exception_handler(None)
    assert not errors, errors


@pytest.mark.parametrize("cancel", [False, True], ids=["running", "cancelled"])
async def test_close_racing_an_enqueue_leaves_no_socket(
    rabbitmq_url: str, namespace: str, broker_port: int, cancel: bool
) -> None:
    async def enqueue(adapter: RabbitMqAdapter) -> None:
        await adapter.enqueue(_message(1))

    await _assert_close_leaves_no_socket(
        rabbitmq_url, namespace, broker_port, enqueue, cancel=cancel
    )


@pytest.mark.parametrize("cancel", [False, True], ids=["running", "cancelled"])
async def test_close_racing_a_receive_leaves_no_socket(
    rabbitmq_url: str, namespace: str, broker_port: int, cancel: bool
) -> None:
    async def receive(adapter: RabbitMqAdapter) -> None:
        await adapter.receive(1, wait=0.05)

    await _assert_close_leaves_no_socket(
        rabbitmq_url, namespace, broker_port, receive, cancel=cancel
    )


async def test_a_closed_adapter_opens_no_connection(
    rabbitmq_url: str, namespace: str, broker_port: int
) -> None:
    """What a killed worker's background sends do: they fail instead of reconnecting."""
    before = _open_broker_sockets(broker_port)
    adapter = RabbitMqAdapter(rabbitmq_url, prefix=namespace)
    try:
        await adapter.enqueue(_message(1))
        assert await adapter.receive(1, wait=5.0)
        await adapter.close()
        with pytest.raises(PermanentBackendError, match="closed"):
            await adapter.enqueue(_message(2))
        with pytest.raises(PermanentBackendError, match="closed"):
            await adapter.receive(1, wait=0.1)
        assert not (_open_broker_sockets(broker_port) - before)
    finally:
        await adapter.close()
        await adapter.delete_queues()
