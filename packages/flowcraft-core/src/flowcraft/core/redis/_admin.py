"""Housekeeping of a namespace's Redis keys (tests, ``BackendFactory.destroy``)."""

from __future__ import annotations

from redis.asyncio import Redis

_BATCH = 500


async def drop_namespace_keys(url: str, namespace: str) -> int:
    """Delete every key under ``<namespace>:`` (SCAN, then DEL in batches); how many went.

    For tearing down a namespace, not for live traffic: keys written meanwhile may stay.
    ``namespace`` must be non-empty (an empty one would match every key of the database).
    """
    if not namespace:
        raise ValueError("drop_namespace_keys needs a namespace: '' would match every key")
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=_BATCH)]
        for start in range(0, len(keys), _BATCH):
            await client.delete(*keys[start : start + _BATCH])
        return len(keys)
    finally:
        await client.aclose()
