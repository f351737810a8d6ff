"""Streams: append-only, write_multi, idempotent EOF, live tailing, pages, info, list."""

from __future__ import annotations

import asyncio

import pytest
from flowcraft.core.testing.world_suite._support import within
from flowcraft.core.world import World, WorldConflictError


async def _read(world: World, run_id: str, name: str, start: int | None = None) -> list[bytes]:
    return [chunk async for chunk in world.streams_get(run_id, name, start)]


async def test_a_reader_tails_concurrent_writes_until_eof(world: World) -> None:
    readers = [asyncio.ensure_future(_read(world, "r1", "out")) for _ in range(2)]
    await asyncio.sleep(0)
    expected = []
    for index in range(30):
        chunk = f"c{index}\x00".encode()
        expected.append(chunk)
        await world.streams_write("r1", "out", chunk)
        if index % 7 == 0:
            await asyncio.sleep(0.001)
    await world.streams_close("r1", "out")
    for result in await within(asyncio.gather(*readers), "readers end at EOF"):
        assert result == expected


async def test_write_multi_appends_in_order_and_close_is_idempotent(world: World) -> None:
    await world.streams_write("r1", "s", b"a")
    await world.streams_write_multi("r1", "s", [b"b", b"\x00", b"d"])
    await world.streams_close("r1", "s")
    await world.streams_close("r1", "s")
    assert await within(_read(world, "r1", "s"), "a closed stream reads to its end") == [
        b"a",
        b"b",
        b"\x00",
        b"d",
    ]
    info = await world.streams_get_info("r1", "s")
    assert (info.tail_index, info.done) == (3, True)
    with pytest.raises(WorldConflictError):
        await world.streams_write("r1", "s", b"late")


async def test_reading_from_an_index_or_from_the_tail(world: World) -> None:
    await world.streams_write_multi("r1", "s", [b"0", b"1", b"2", b"3"])
    await world.streams_close("r1", "s")
    assert await within(_read(world, "r1", "s", 2), "from 2") == [b"2", b"3"]
    assert await within(_read(world, "r1", "s", -3), "last 3") == [b"1", b"2", b"3"]
    assert await within(_read(world, "r1", "s", -10), "clamped") == [b"0", b"1", b"2", b"3"]
    assert await within(_read(world, "r1", "s", 9), "past the end") == []


async def test_a_tail_read_of_a_live_stream_starts_near_its_end(world: World) -> None:
    await world.streams_write_multi("r1", "s", [b"0", b"1", b"2"])
    reader = asyncio.ensure_future(_read(world, "r1", "s", -1))
    await asyncio.sleep(0.01)
    await world.streams_write("r1", "s", b"3")
    await world.streams_close("r1", "s")
    assert await within(reader, "the tail reader") == [b"2", b"3"]


async def test_chunk_pages_and_info(world: World) -> None:
    assert (await world.streams_get_info("r1", "s")).tail_index == -1
    await world.streams_write_multi("r1", "s", [bytes([i]) for i in range(5)])
    first = await world.streams_get_chunks("r1", "s", limit=3)
    assert ([c.index for c in first.data], first.has_more, first.done) == ([0, 1, 2], True, False)
    rest = await world.streams_get_chunks("r1", "s", limit=3, cursor=first.cursor)
    assert ([c.data for c in rest.data], rest.has_more, rest.done) == (
        [b"\x03", b"\x04"],
        False,
        False,
    )
    await world.streams_close("r1", "s")
    closed = await world.streams_get_chunks("r1", "s", limit=10)
    assert (len(closed.data), closed.done) == (5, True)
    assert (await world.streams_get_info("r1", "s")).done


async def test_streams_are_listed_per_run(world: World) -> None:
    await world.streams_write("r1", "a", b"x")
    await world.streams_write("r1", "b", b"x")
    await world.streams_write("r2", "c", b"x")
    assert await world.streams_list("r1") == ["a", "b"]
    assert await world.streams_list("r2") == ["c"]
