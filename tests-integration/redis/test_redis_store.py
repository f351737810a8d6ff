"""RedisCoordinationStore against the real Redis."""

from __future__ import annotations

import asyncio

from flowcraft.core.redis import RedisCoordinationStore


async def pttl(store: RedisCoordinationStore, redis_key: str) -> int:
    return int(await store._client.pttl(redis_key))


async def test_set_add_reports_new_members_only(redis_store: RedisCoordinationStore) -> None:
    assert await redis_store.set_add("run:r1:join:n", "a") is True
    assert await redis_store.set_add("run:r1:join:n", "a") is False
    assert await redis_store.set_add("run:r1:join:n", "b") is True


async def test_set_add_is_atomic_under_contention(redis_store: RedisCoordinationStore) -> None:
    results = await asyncio.gather(*(redis_store.set_add("run:r:s", "m") for _ in range(50)))
    assert results.count(True) == 1


async def test_set_add_ttl(redis_store: RedisCoordinationStore) -> None:
    await redis_store.set_add("k", "a", ttl=30)
    assert 0 < await pttl(redis_store, redis_store.key("k")) <= 30_000
    await redis_store.set_add("k2", "a")
    assert await pttl(redis_store, redis_store.key("k2")) == -1


async def test_compare_and_set(redis_store: RedisCoordinationStore) -> None:
    assert await redis_store.get("run:r:v") is None
    assert await redis_store.compare_and_set("run:r:v", None, "running") is True
    assert await redis_store.compare_and_set("run:r:v", None, "other") is False
    assert await redis_store.compare_and_set("run:r:v", "pending", "x") is False
    assert await redis_store.get("run:r:v") == "running"
    assert await redis_store.compare_and_set("run:r:v", "running", "completed", ttl=10) is True
    assert await redis_store.get("run:r:v") == "completed"
    assert 0 < await pttl(redis_store, redis_store.key("run:r:v")) <= 10_000


async def test_compare_and_set_has_one_winner(redis_store: RedisCoordinationStore) -> None:
    attempts = [redis_store.compare_and_set("run:r:t", None, f"w{i}") for i in range(30)]
    results = await asyncio.gather(*attempts)
    assert results.count(True) == 1
    assert await redis_store.get("run:r:t") == f"w{results.index(True)}"


async def test_fencing_tokens_strictly_increase(redis_store: RedisCoordinationStore) -> None:
    tokens: list[int] = []
    for _ in range(5):
        token = await redis_store.acquire_lock("run:r:lock", ttl=10)
        assert token is not None
        assert await redis_store.acquire_lock("run:r:lock", ttl=10) is None
        tokens.append(token)
        assert await redis_store.release_lock("run:r:lock", token) is True
    assert tokens == sorted(set(tokens))


async def test_a_lock_expires_and_the_next_token_is_higher(
    redis_store: RedisCoordinationStore,
) -> None:
    first = await redis_store.acquire_lock("l", ttl=0.1)
    assert first is not None
    await asyncio.sleep(0.2)
    second = await redis_store.acquire_lock("l", ttl=10)
    assert second is not None
    assert second > first
    assert await redis_store.release_lock("l", first) is False  # the stale holder is refused
    assert await redis_store.acquire_lock("l", ttl=10) is None  # still held by `second`


async def test_release_with_a_stale_token_is_refused(redis_store: RedisCoordinationStore) -> None:
    token = await redis_store.acquire_lock("l2", ttl=10)
    assert token is not None
    assert await redis_store.release_lock("l2", token + 1) is False
    assert await redis_store.acquire_lock("l2", ttl=10) is None
    assert await redis_store.release_lock("l2", token) is True


async def test_one_lock_holder_under_contention(redis_store: RedisCoordinationStore) -> None:
    tokens = await asyncio.gather(*(redis_store.acquire_lock("c", ttl=10) for _ in range(40)))
    assert sum(token is not None for token in tokens) == 1


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


async def test_keys_really_expire(redis_store: RedisCoordinationStore) -> None:
    await redis_store.compare_and_set("run:r3:v", None, "x")
    await redis_store.expire_run("r3", ttl=0.2)
    await asyncio.sleep(0.4)
    assert await redis_store.get("run:r3:v") is None
