"""``flowcraft.core.redis.drop_namespace_keys`` against a real Redis."""

from __future__ import annotations

import uuid

import pytest
from flowcraft.core.redis import drop_namespace_keys
from redis.asyncio import Redis


async def test_a_namespace_goes_and_its_neighbours_stay(redis_url: str) -> None:
    mine, other = f"drop-{uuid.uuid4().hex[:8]}", f"drop-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(redis_url)
    try:
        for i in range(1_203):  # more than two SCAN/DEL batches
            await client.set(f"{mine}:k{i}", i)
        await client.set(f"{other}:k", 1)
        await client.set(mine, 1)  # the bare name is not under "<namespace>:"
        assert await drop_namespace_keys(redis_url, mine) == 1_203
        assert [key async for key in client.scan_iter(match=f"{mine}:*")] == []
        assert await client.get(f"{other}:k") == b"1"
        assert await client.get(mine) == b"1"
        assert await drop_namespace_keys(redis_url, mine) == 0  # idempotent
    finally:
        await client.delete(f"{other}:k", mine)
        await client.aclose()


async def test_an_empty_namespace_is_refused_before_touching_anything(redis_url: str) -> None:
    with pytest.raises(ValueError, match="needs a namespace"):
        await drop_namespace_keys(redis_url, "")
