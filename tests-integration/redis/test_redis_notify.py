"""NotifyingRunStore against the real Redis: runs' ends over pub/sub between processes.

Two wrappers over one run store stand for two processes (each has its own Redis
connections): one watches, the other saves. The notifier port's contract itself is in the
conformance suite (test_ports_notifier), which the Azure and Kafka backends run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from flowcraft.core import MemoryRunStore
from flowcraft.core.ports import RunRecord
from flowcraft.core.redis import NotifyingRunStore
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

_WAKE = 5.0


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")


async def _save(store: NotifyingRunStore, run_id: str, version: int, status: str) -> bool:
    return await store.save_state(
        run_id, expected_version=version, header={"v": version + 1}, records={},
        context_writes={}, outbox=(), status=status,
    )  # fmt: skip


@pytest.fixture
async def pair(
    redis_url: str, namespace: str
) -> AsyncIterator[tuple[NotifyingRunStore, NotifyingRunStore]]:
    """A watcher and a saver over one run store, each with its own Redis client.

    The watcher's client is named (to find its connection) and retries broken commands on
    its own: its listening connection must not, or a break would go unseen.
    """
    inner = MemoryRunStore()
    client = Redis.from_url(redis_url, client_name=namespace, retry=Retry(NoBackoff(), 3))
    watcher = NotifyingRunStore(inner, client, prefix=namespace)
    saver = NotifyingRunStore(inner, redis_url, prefix=namespace)
    yield watcher, saver
    await watcher.close()
    await watcher._client.aclose()  # the test's own client: the wrapper leaves it open
    await saver.close()


async def _subscribers(redis_url: str, channel: str, expected: int) -> int:
    """The channel's subscriber count once it is ``expected`` (or after 2 s: a closed
    connection leaves the count when the server has processed its end)."""
    admin = Redis.from_url(redis_url)
    try:
        for _ in range(20):
            count = int((await admin.pubsub_numsub(channel))[0][1])
            if count == expected:
                break
            await asyncio.sleep(0.1)
        return count
    finally:
        await admin.aclose()


async def test_a_terminal_save_in_another_process_wakes_the_watch(
    pair: tuple[NotifyingRunStore, NotifyingRunStore],
) -> None:
    watcher, saver = pair
    await saver.create_run(_record("r1"), {"v": 1})
    async with watcher.watch("r1") as watch, watcher.watch("r2") as other:
        assert await _save(saver, "r1", 1, "running")
        assert not await watch.wait(0.3), "a running save notified"
        assert await _save(saver, "r1", 2, "completed")
        assert await watch.wait(_WAKE), "no notification from the other process"
        assert not await other.wait(0.3), "another run's watch woke"


async def test_a_refused_save_publishes_nothing(
    pair: tuple[NotifyingRunStore, NotifyingRunStore],
) -> None:
    watcher, saver = pair
    await saver.create_run(_record("r1"), {"v": 1})
    async with watcher.watch("r1") as watch:
        assert not await _save(saver, "r1", 7, "completed"), "a stale version was saved"
        assert not await watch.wait(0.5), "a refused save notified"


async def test_one_subscription_per_wrapper(
    pair: tuple[NotifyingRunStore, NotifyingRunStore], redis_url: str
) -> None:
    watcher, _saver = pair
    assert await _subscribers(redis_url, watcher.channel, 0) == 0
    async with watcher.watch("r1"), watcher.watch("r2"), watcher.watch("r1"):
        assert await _subscribers(redis_url, watcher.channel, 1) == 1


async def test_a_killed_subscription_wakes_every_watch_and_the_next_watch_resubscribes(
    pair: tuple[NotifyingRunStore, NotifyingRunStore], redis_url: str, namespace: str
) -> None:
    watcher, saver = pair
    await saver.create_run(_record("r1"), {"v": 1})
    admin = Redis.from_url(redis_url)
    try:
        async with watcher.watch("r1") as first, watcher.watch("r2") as second:
            ours = [c for c in await admin.client_list(_type="pubsub") if c["name"] == namespace]
            assert len(ours) == 1
            await admin.client_kill_filter(_id=ours[0]["id"])  # only ours: Redis is shared
            assert await first.wait(_WAKE), "the broken subscription woke nobody"
            assert await second.wait(_WAKE)
        assert await _subscribers(redis_url, watcher.channel, 0) == 0
        async with watcher.watch("r1") as watch:
            assert await _subscribers(redis_url, watcher.channel, 1) == 1
            assert await _save(saver, "r1", 1, "failed")
            assert await watch.wait(_WAKE), "the new subscription heard nothing"
    finally:
        await admin.aclose()


async def test_the_wrapper_is_transparent_and_closes_the_inner_store(
    redis_url: str, namespace: str
) -> None:
    closed: list[str] = []

    class Inner(MemoryRunStore):
        async def ensure_schema(self) -> str:
            return "ensured"

        async def close(self) -> None:
            closed.append("inner")

    store = NotifyingRunStore(Inner(), redis_url, prefix=namespace)
    assert await store.ensure_schema() == "ensured"
    async with store.watch("r1"):
        pass
    await store.close()
    assert closed == ["inner"]
    with pytest.raises(RuntimeError, match="closed"):
        async with store.watch("r1"):
            pass
