"""PostgresContext as a RunNotifier: LISTEN/NOTIFY against the real PostgreSQL.

What the suite cannot see from one store: a notification crosses stores (processes) through
the server, a refused save notifies nobody (NOTIFY is transactional), a long namespace still
gets a valid channel, and a listener whose connection is killed wakes its watches and listens
again at the next watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from flowcraft.core import ports
from flowcraft.rabbitmq import PostgresContext
from flowcraft.rabbitmq._notify import channel_name

_WAKE = 5.0


def _record(run_id: str) -> ports.RunRecord:
    return ports.RunRecord(
        run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d"
    )


async def _save(store: PostgresContext, run_id: str, version: int, status: str) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        header={"v": version + 1},
        records={},
        context_writes={},
        outbox=(),
        status=status,
    )


@pytest.fixture
async def other_store(
    postgres_url: str, pg_store: PostgresContext
) -> AsyncIterator[PostgresContext]:
    """A second store on the same tables (another process, as far as PostgreSQL can tell)."""
    store = PostgresContext(postgres_url, table_prefix=pg_store.tables.runs.removesuffix("_runs"))
    yield store
    await store.close()


async def test_a_save_by_another_store_wakes_the_watch(
    pg_store: PostgresContext, other_store: PostgresContext
) -> None:
    await pg_store.create_run(_record("r1"), {"v": 1})
    async with pg_store.watch("r1") as watch, pg_store.watch("r2") as unrelated:
        assert await _save(other_store, "r1", 1, "completed")
        assert await watch.wait(_WAKE)
        assert not await unrelated.wait(0.3)  # PostgreSQL says which run ended


async def test_a_refused_save_notifies_nobody(pg_store: PostgresContext) -> None:
    await pg_store.create_run(_record("r1"), {"v": 1})
    async with pg_store.watch("r1") as watch:
        assert not await _save(pg_store, "r1", 7, "completed")  # wrong version: refused
        assert await _save(pg_store, "r1", 1, "running")  # committed, not terminal
        assert not await watch.wait(0.5)


async def test_a_long_namespace_gets_a_valid_channel(postgres_url: str) -> None:
    prefix = "n" * 40  # the run table's name is 45 characters: the channel would be 60 + ...
    assert len(channel_name(f"{prefix}_runs")) <= 63
    store = PostgresContext(postgres_url, table_prefix=prefix, max_size=2)
    await store.ensure_schema()
    try:
        await store.create_run(_record("r1"), {"v": 1})
        async with store.watch("r1") as watch:
            assert await _save(store, "r1", 1, "failed")
            assert await watch.wait(_WAKE)
    finally:
        await store.drop_schema()
        await store.close()
    assert channel_name("x" * 70) != channel_name("x" * 71)


async def test_a_killed_listener_wakes_its_watches_and_listens_again(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    await pg_store.create_run(_record("r1"), {"v": 1})
    await pg_store.create_run(_record("r2"), {"v": 1})
    async with pg_store.watch("r1") as watch:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            # Only this store's listener: other tests listen on the same server at once.
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query = %s AND pid <> pg_backend_pid()",
                (f'LISTEN "{channel_name(pg_store.tables.runs)}"',),
            )
            assert (await cur.fetchall()) != [], "no listening connection found"
        # Notifications may have been lost: the watch wakes so its owner reads again.
        assert await watch.wait(_WAKE)
    async with pg_store.watch("r2") as again:  # connects and listens anew
        assert await _save(pg_store, "r2", 1, "cancelled")
        assert await again.wait(_WAKE)
    await asyncio.sleep(0)
