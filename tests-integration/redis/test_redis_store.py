"""RedisCoordinationStore against the real Redis: what only Redis shows (key TTLs, the run index).

The coordination port's contract itself is in the conformance suite (test_ports_coordination),
which every backend with a Redis coordination store runs.
"""

from __future__ import annotations

from flowcraft.core.redis import RedisCoordinationStore


async def pttl(store: RedisCoordinationStore, redis_key: str) -> int:
    return int(await store._client.pttl(redis_key))


async def test_set_add_ttl(redis_store: RedisCoordinationStore) -> None:
    await redis_store.set_add("k", "a", ttl=30)
    assert 0 < await pttl(redis_store, redis_store.key("k")) <= 30_000
    await redis_store.set_add("k2", "a")
    assert await pttl(redis_store, redis_store.key("k2")) == -1


async def test_compare_and_set_ttl_is_the_key_ttl(redis_store: RedisCoordinationStore) -> None:
    assert await redis_store.get("run:r:v") is None
    assert await redis_store.compare_and_set("run:r:v", None, "running") is True
    assert await redis_store.compare_and_set("run:r:v", None, "other") is False
    assert await redis_store.compare_and_set("run:r:v", "pending", "x") is False
    assert await redis_store.get("run:r:v") == "running"
    assert await redis_store.compare_and_set("run:r:v", "running", "completed", ttl=10) is True
    assert await redis_store.get("run:r:v") == "completed"
    assert 0 < await pttl(redis_store, redis_store.key("run:r:v")) <= 10_000


async def test_expire_run_sets_ttls_on_every_key_of_the_run(
    redis_store: RedisCoordinationStore,
) -> None:
    await redis_store.set_add("run:r1:join:a", "x")
    await redis_store.compare_and_set("run:r1:status", None, "done")
    lock = await redis_store.acquire_lock("run:r1:lock", ttl=5)
    await redis_store.set_add("run:r2:join:a", "x")
    await redis_store.set_add("global", "x")
    await redis_store.expire_run("r1", ttl=60)

    prefix = redis_store.prefix
    for key in ("run:r1:join:a", "run:r1:status"):
        assert 55_000 < await pttl(redis_store, redis_store.key(key)) <= 60_000
    assert 0 < await pttl(redis_store, f"{prefix}:fence:run:r1:lock") <= 60_000
    assert 0 < await pttl(redis_store, f"{prefix}:lock:run:r1:lock") <= 5_000  # not prolonged
    assert 0 < await pttl(redis_store, redis_store.run_index("r1")) <= 60_000
    assert await pttl(redis_store, redis_store.key("run:r2:join:a")) == -1
    assert await pttl(redis_store, redis_store.key("global")) == -1
    assert lock is not None


async def test_late_writes_of_an_expired_run_inherit_its_ttl(
    redis_store: RedisCoordinationStore,
) -> None:
    await redis_store.expire_run("r9", ttl=60)  # nothing written yet
    await redis_store.set_add("run:r9:join:late", "x")
    assert 0 < await pttl(redis_store, redis_store.key("run:r9:join:late")) <= 60_000
