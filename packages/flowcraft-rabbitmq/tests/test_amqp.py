"""The AMQP connection's write coalescing (``_amqp._Connection``), without a broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from flowcraft.rabbitmq._amqp import _Connection


def _connection(writes: list[bytes] | None) -> _Connection:
    """A connection object as pika leaves it once connected, with a recording transport."""
    connection: _Connection = _Connection.__new__(_Connection)
    connection._frames = []
    connection._frames_loop = asyncio.get_running_loop()
    connection._transport = None if writes is None else SimpleNamespace(write=writes.append)
    return connection


async def test_the_frames_of_one_loop_turn_go_out_in_one_write_in_order() -> None:
    writes: list[bytes] = []
    connection = _connection(writes)
    for frame in (b"method", b"header", b"body"):
        connection._adapter_emit_data(frame)
    assert writes == []  # not before the end of the turn
    await asyncio.sleep(0)
    assert writes == [b"methodheaderbody"]
    connection._adapter_emit_data(b"ack")
    await asyncio.sleep(0)
    assert writes == [b"methodheaderbody", b"ack"]


async def test_frames_of_a_lost_connection_are_dropped() -> None:
    connection = _connection(None)
    connection._adapter_emit_data(b"late")
    await asyncio.sleep(0)
    assert connection._frames == []
