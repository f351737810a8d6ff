"""PostgresContext (the run store) against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import psycopg
import pytest
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.rabbitmq import PostgresContext


def record(run_id: str, **fields: object) -> ports.RunRecord:
    base: dict[str, object] = {
        "run_id": run_id,
        "blueprint_id": "bp",
        "blueprint_version": "1",
        "blueprint_digest": "d1",
    }
    return ports.RunRecord(**{**base, **fields})  # type: ignore[arg-type]


async def save(
    store: PostgresContext,
    run_id: str,
    version: int,
    *,
    writes: Mapping[str, object] | None = None,
    outbox: tuple[ports.Message, ...] = (),
    status: str = "running",
    document: dict[str, object] | None = None,
) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        document=document or {"v": version + 1},
        context_writes=writes or {},
        outbox=outbox,
        status=status,
    )


async def test_create_run_stores_the_record_and_initial_state(pg_store: PostgresContext) -> None:
    created = await pg_store.create_run(
        record("r1", input={"x": 1}, parent=("p", "n", "f", 2), created_at=1_700_000_000.5),
        {"doc": 1},
    )
    assert created.input == {"x": 1}
    assert created.parent == ("p", "n", "f", 2)
    assert created.created_at == pytest.approx(1_700_000_000.5)
    assert await pg_store.get_run("r1") == created
    state = await pg_store.load_state("r1")
    assert state == ports.StoredState(
        version=1, document={"doc": 1}, context={}, outbox=(), record=created
    )
    assert await pg_store.get_run("nope") is None
    assert await pg_store.load_state("nope") is None


async def test_create_run_is_idempotent_by_id(pg_store: PostgresContext) -> None:
    first = await pg_store.create_run(record("r1", input=1), {"doc": 1})
    again = await pg_store.create_run(record("r1", input=2, blueprint_id="other"), {"doc": 2})
    assert again == first
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.document == {"doc": 1}


async def test_create_run_is_idempotent_by_key_even_concurrently(
    pg_store: PostgresContext,
) -> None:
    results = await asyncio.gather(
        *(pg_store.create_run(record(f"r{i}", idempotency_key="k"), {}) for i in range(8))
    )
    assert len({r.run_id for r in results}) == 1
    page = await pg_store.list_runs()
    assert [r.run_id for r in page.runs] == [results[0].run_id]


async def test_save_state_compare_and_set(pg_store: PostgresContext) -> None:
    await pg_store.create_run(record("r1"), {"v": 1})
    message = ports.Message(id="m1", body=b"\x00one")
    assert await save(pg_store, "r1", 1, writes={"a": 1}, outbox=(message,), status="running")
    stale = ports.Message(id="m2", body=b"two")
    refused = await save(
        pg_store, "r1", 1, writes={"a": 99, "b": 2}, outbox=(stale,), status="failed"
    )
    assert refused is False
    state = await pg_store.load_state("r1")
    run = await pg_store.get_run("r1")
    assert run is not None
    assert run.status == "running"
    assert state == ports.StoredState(
        version=2, document={"v": 2}, context={"a": 1}, outbox=(message,), record=run
    )
    assert not await save(pg_store, "missing", 1)


async def test_save_state_updates_the_record_and_the_status_row(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    created = await pg_store.create_run(record("r1"), {})
    await asyncio.sleep(0.01)
    ok = await pg_store.save_state(
        "r1",
        expected_version=1,
        document={},
        context_writes={},
        outbox=(),
        status="failed",
        output={"out": [1, 2]},
        errors=({"node": "n", "message": "boom"},),
    )
    assert ok
    run = await pg_store.get_run("r1")
    assert run is not None
    assert (run.status, run.output, run.errors) == (
        "failed",
        {"out": [1, 2]},
        ({"node": "n", "message": "boom"},),
    )
    assert run.updated_at > created.updated_at
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            psycopg.sql.SQL("SELECT status_data FROM {} WHERE run_id = %s").format(
                psycopg.sql.Identifier(pg_store.tables.statuses)
            ),
            ("r1",),
        )
        assert await cur.fetchone() == ({"status": "failed"},)


async def test_delete_marker_removes_only_that_key(pg_store: PostgresContext) -> None:
    await pg_store.create_run(record("r1"), {})
    assert await save(pg_store, "r1", 1, writes={"a": 1, "b": {"nested": True}, "c": None})
    assert await save(pg_store, "r1", 2, writes={"a": ports.DELETE, "d": 4})
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.context == {"b": {"nested": True}, "c": None, "d": 4}


async def test_a_save_without_context_writes_leaves_the_context_row_alone(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    """No new row version per save (a rewrite of the whole context row costs and bloats)."""
    await pg_store.create_run(record("r1"), {})
    assert await save(pg_store, "r1", 1, writes={"a": 1})

    async def context_row_version() -> object:
        async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
            cur = await conn.execute(
                psycopg.sql.SQL("SELECT xmin::text FROM {} WHERE run_id = %s").format(
                    psycopg.sql.Identifier(pg_store.tables.contexts)
                ),
                ("r1",),
            )
            row = await cur.fetchone()
            assert row is not None
            return row[0]

    before = await context_row_version()
    assert await save(pg_store, "r1", 2)
    assert await context_row_version() == before
    assert await save(pg_store, "r1", 3, writes={"b": 2})
    assert await context_row_version() != before
    state = await pg_store.load_state("r1")
    assert state is not None
    assert (state.version, state.context) == (4, {"a": 1, "b": 2})


async def test_concurrent_chains_on_different_keys_lose_no_update(
    pg_store: PostgresContext,
) -> None:
    await pg_store.create_run(record("r1"), {})
    rounds = 15
    conflicts = 0

    async def chain(name: str) -> None:
        nonlocal conflicts
        for i in range(rounds):
            while True:
                state = await pg_store.load_state("r1")
                assert state is not None
                writes = {f"{name}{i}": i, name: i}
                if await save(pg_store, "r1", state.version, writes=writes):
                    break
                conflicts += 1

    await asyncio.gather(chain("a"), chain("b"), chain("c"))
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.version == 1 + 3 * rounds
    expected = {f"{n}{i}": i for n in "abc" for i in range(rounds)}
    expected.update({n: rounds - 1 for n in "abc"})
    assert state.context == expected


async def test_outbox_append_and_remove(pg_store: PostgresContext) -> None:
    await pg_store.create_run(record("r1"), {})
    m1, m2, m3 = (ports.Message(id=f"m{i}", body=bytes([i])) for i in (1, 2, 3))
    assert await save(pg_store, "r1", 1, outbox=(m2, m1))
    assert await save(pg_store, "r1", 2, outbox=(m3, m1))  # m1 again: kept once
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.outbox == (m2, m1, m3)
    await pg_store.remove_outbox({"r1": ["m1", "m3", "unknown"]})
    await pg_store.remove_outbox({"r1": ["m1"]})
    await pg_store.remove_outbox({"r1": []})
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.outbox == (m2,)


async def test_outbox_keeps_the_rest_of_a_save_when_some_of_its_messages_go(
    pg_store: PostgresContext,
) -> None:
    await pg_store.create_run(record("r1"), {})
    await pg_store.create_run(record("r2"), {})
    m1, m2, m3, m4 = (ports.Message(id=f"m{i}", body=bytes([i, 0, 255])) for i in (1, 2, 3, 4))
    assert await save(pg_store, "r1", 1, outbox=(m1, m2, m3))
    assert await save(pg_store, "r1", 2, outbox=(m4,))
    assert await save(pg_store, "r2", 1, outbox=(m1,))
    await pg_store.remove_outbox({"r1": ["m2", "m4"], "r2": ["m1"]})
    first = await pg_store.load_state("r1")
    other = await pg_store.load_state("r2")
    assert first is not None
    assert other is not None
    assert (first.outbox, other.outbox) == ((m1, m3), ())
    assert await save(pg_store, "r1", 3, outbox=(m2,))
    await pg_store.remove_outbox({"r1": ["m1", "m3"]})
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.outbox == (m2,)


async def _row_versions(postgres_url: str, store: PostgresContext, run_id: str) -> tuple[str, str]:
    """xmin of the run row and of the status row (a new one per write)."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        found = []
        for table in (store.tables.runs, store.tables.statuses):
            query = psycopg.sql.SQL("SELECT xmin::text FROM {} WHERE run_id = %s")
            cur = await conn.execute(query.format(psycopg.sql.Identifier(table)), (run_id,))
            row = await cur.fetchone()
            assert row is not None
            found.append(str(row[0]))
        return found[0], found[1]


async def test_saves_write_the_run_and_status_rows_only_when_they_change(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    await pg_store.create_run(record("r1"), {})
    assert await save(pg_store, "r1", 1)  # pending -> running
    before = await _row_versions(postgres_url, pg_store, "r1")
    run = await pg_store.get_run("r1")
    assert await save(pg_store, "r1", 2)  # still running: nothing there changes
    assert await _row_versions(postgres_url, pg_store, "r1") == before
    assert await pg_store.get_run("r1") == run
    assert await save(pg_store, "r1", 3, status="completed")
    after = await _row_versions(postgres_url, pg_store, "r1")
    assert after[0] != before[0]
    assert after[1] != before[1]
    done = await pg_store.get_run("r1")
    assert done is not None
    assert run is not None
    assert done.status == "completed"
    assert done.updated_at > run.updated_at


async def test_updated_at_trails_the_last_save_by_at_most_the_granularity(
    pg_store: PostgresContext,
) -> None:
    from flowcraft.rabbitmq import _schema

    await pg_store.create_run(record("r1"), {})
    assert await save(pg_store, "r1", 1)
    run = await pg_store.get_run("r1")
    assert run is not None
    await asyncio.sleep(_schema.UPDATED_AT_GRANULARITY + 0.1)
    assert await save(pg_store, "r1", 2)
    later = await pg_store.get_run("r1")
    assert later is not None
    assert later.updated_at >= run.updated_at + _schema.UPDATED_AT_GRANULARITY
    stalled = await pg_store.stalled_runs(updated_before=later.updated_at - 0.05)
    assert "r1" not in stalled  # the status row moved on with the run row


async def test_ensure_schema_converts_an_outbox_of_one_row_per_message(
    postgres_url: str, namespace: str
) -> None:
    old = PostgresContext(postgres_url, table_prefix=namespace, max_size=2)
    outbox = psycopg.sql.Identifier(old.tables.outbox)
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(
                psycopg.sql.SQL(
                    "CREATE TABLE {} (run_id TEXT NOT NULL, message_id TEXT NOT NULL, "
                    "body BYTEA NOT NULL, position BIGINT GENERATED ALWAYS AS IDENTITY, "
                    "PRIMARY KEY (run_id, message_id))"
                ).format(outbox)
            )
            insert = psycopg.sql.SQL(
                "INSERT INTO {} (run_id, message_id, body) VALUES (%s, %s, %s)"
            )
            for run_id, message_id in (("r1", "b"), ("r2", "x"), ("r1", "a")):
                await conn.execute(insert.format(outbox), (run_id, message_id, message_id.encode()))
        await old.ensure_schema()
        await old.ensure_schema()  # idempotent once converted
        await old.create_run(record("r1"), {})
        state = await old.load_state("r1")
        assert state is not None
        assert state.outbox == (ports.Message(id="b", body=b"b"), ports.Message(id="a", body=b"a"))
        assert await save(old, "r1", 1, outbox=(ports.Message(id="c", body=b"c"),))
        await old.remove_outbox({"r1": ["a", "b"]})
        state = await old.load_state("r1")
        assert state is not None
        assert [m.id for m in state.outbox] == ["c"]
    finally:
        await old.drop_schema()
        await old.close()


async def test_claim_busy_claimed_done(pg_store: PostgresContext) -> None:
    before = time.time()
    claim = await pg_store.claim_attempt("r1", "n#1", "w1", 30)
    assert claim.status is ports.ClaimStatus.CLAIMED
    assert before + 25 < claim.lease_until < before + 35
    busy = await pg_store.claim_attempt("r1", "n#1", "w2", 30)
    assert busy == ports.AttemptClaim(status=ports.ClaimStatus.BUSY, lease_until=claim.lease_until)
    again = await pg_store.claim_attempt("r1", "n#1", "w1", 60)  # the owner may re-claim
    assert again.status is ports.ClaimStatus.CLAIMED
    assert again.lease_until > claim.lease_until
    assert await pg_store.commit_attempt("r1", "n#1", b"ok") == b"ok"
    done = await pg_store.claim_attempt("r1", "n#1", "w2", 30)
    assert done == ports.AttemptClaim(status=ports.ClaimStatus.DONE, outcome=b"ok")
    assert (await pg_store.claim_attempt("r1", "n#2", "w2", 30)).status is (
        ports.ClaimStatus.CLAIMED
    )


async def test_expired_lease_is_taken_over_and_the_old_owner_loses_it(
    pg_store: PostgresContext,
) -> None:
    assert (await pg_store.claim_attempt("r1", "a", "w1", 0.2)).status is (
        ports.ClaimStatus.CLAIMED
    )
    assert (await pg_store.claim_attempt("r1", "a", "w2", 5)).status is ports.ClaimStatus.BUSY
    await asyncio.sleep(0.3)
    assert (await pg_store.claim_attempt("r1", "a", "w2", 5)).status is (ports.ClaimStatus.CLAIMED)
    assert await pg_store.extend_attempt("r1", "a", "w1", 5) is False
    assert await pg_store.extend_attempt("r1", "a", "w2", 5) is True
    await pg_store.commit_attempt("r1", "a", b"x")
    assert await pg_store.extend_attempt("r1", "a", "w2", 5) is False


async def test_commit_first_writer_wins(pg_store: PostgresContext) -> None:
    await pg_store.claim_attempt("r1", "a", "w1", 5)
    outcomes = await asyncio.gather(
        *(pg_store.commit_attempt("r1", "a", f"o{i}".encode()) for i in range(10))
    )
    assert len(set(outcomes)) == 1
    assert await pg_store.commit_attempt("r1", "a", b"late") == outcomes[0]
    assert await pg_store.commit_attempt("r1", "unclaimed", b"u") == b"u"


async def test_list_runs_pages_newest_first(pg_store: PostgresContext) -> None:
    for i in range(7):
        status = "completed" if i % 2 else "running"
        await pg_store.create_run(record(f"r{i}", status=status, created_at=1000.0 + i), {})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await pg_store.list_runs(limit=3, cursor=cursor)
        seen.extend(r.run_id for r in page.runs)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in reversed(range(7))]
    assert pages == 3
    done = await pg_store.list_runs(status="completed", limit=2)
    assert [r.run_id for r in done.runs] == ["r5", "r3"]
    assert done.cursor is not None
    rest = await pg_store.list_runs(status="completed", limit=2, cursor=done.cursor)
    assert [r.run_id for r in rest.runs] == ["r1"]
    assert rest.cursor is None


async def test_list_runs_breaks_created_at_ties_by_id(pg_store: PostgresContext) -> None:
    for run_id in ("b", "a", "c"):
        await pg_store.create_run(record(run_id, created_at=5000.0), {})
    first = await pg_store.list_runs(limit=2)
    assert first.cursor is not None
    second = await pg_store.list_runs(limit=2, cursor=first.cursor)
    assert [r.run_id for r in first.runs + second.runs] == ["c", "b", "a"]


async def test_list_runs_rejects_a_bad_cursor(pg_store: PostgresContext) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await pg_store.list_runs(cursor="not-a-cursor")


async def test_stalled_runs(pg_store: PostgresContext) -> None:
    for run_id, status in (("p", "pending"), ("r", "running"), ("w", "awaiting")):
        await pg_store.create_run(record(run_id, status=status), {})
    await pg_store.create_run(record("c"), {})
    assert await save(pg_store, "c", 1, status="completed")
    await asyncio.sleep(0.05)
    cutoff = time.time()
    await asyncio.sleep(0.05)
    await pg_store.create_run(record("fresh", status="running"), {})
    stalled = await pg_store.stalled_runs(updated_before=cutoff)
    assert sorted(stalled) == ["p", "r", "w"]
    assert len(await pg_store.stalled_runs(updated_before=cutoff, limit=2)) == 2
    assert await pg_store.stalled_runs(updated_before=cutoff - 3600) == []


async def test_ensure_schema_is_idempotent_and_concurrent(pg_store: PostgresContext) -> None:
    await asyncio.gather(*(pg_store.ensure_schema() for _ in range(4)))
    await pg_store.create_run(record("r1"), {})
    assert await pg_store.get_run("r1") is not None


async def _terminate_backends(postgres_url: str, application_name: str) -> int:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_a_dropped_connection_is_survived(postgres_url: str, namespace: str) -> None:
    dsn = f"{postgres_url}?application_name={namespace}"
    store = PostgresContext(dsn, table_prefix=namespace, min_size=1, max_size=1)
    try:
        await store.ensure_schema()
        await store.create_run(record("r1"), {})
        assert await _terminate_backends(postgres_url, namespace) == 1
        run = await store.get_run("r1")  # idempotent reads reconnect by themselves
        assert run is not None
        assert await _terminate_backends(postgres_url, namespace) == 1
        try:  # a CAS write is not retried inside: it either worked or says "transient"
            assert await save(store, "r1", 1)
        except TransientBackendError:
            assert await save(store, "r1", 1)  # the caller's retry succeeds
        state = await store.load_state("r1")
        assert state is not None
        assert state.version == 2
    finally:
        await store.drop_schema()
        await store.close()


async def test_no_index_of_the_run_table_covers_updated_at(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    """Every save sets ``updated_at``: indexed, it would make each save a non-HOT update of
    the run row (a new entry in every index of the table); stalled runs come from the
    status table's index instead."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s", (pg_store.tables.runs,)
        )
        definitions = [row[0] for row in await cur.fetchall()]
    assert len(definitions) == 4, definitions  # pkey, idempotency key, created, status+created
    assert not [d for d in definitions if "updated_at" in d], definitions
