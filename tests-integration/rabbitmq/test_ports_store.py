"""PostgresContext (the run store) against the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import psycopg
import psycopg.types.json
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
    header: dict[str, object] | None = None,
) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        header=header or {"v": version + 1},
        records={},
        context_writes=writes or {},
        outbox=outbox,
        status=status,
    )


async def test_save_state_updates_the_record_and_the_status_row(
    pg_store: PostgresContext, postgres_url: str
) -> None:
    created = await pg_store.create_run(record("r1"), {})
    await asyncio.sleep(0.01)
    ok = await pg_store.save_state(
        "r1",
        expected_version=1,
        header={},
        records={},
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


#: A run state as builds before the records layout stored it: one whole document.
_LEGACY_DOCUMENT = {
    "run_id": "r1", "plan": ["bp", "1"], "status": "running", "input": {"n": 1},
    "output": None, "errors": [], "busy": 1, "awaiting": 0, "settled": False, "tokens": {},
    "nodes": [
        {"node_id": "a", "frame": "", "status": "succeeded", "attempt": 1, "output": 2,
         "resolved": True},
        {"node_id": "M", "frame": "", "status": "running", "attempt": 2, "input": [5, 6]},
    ],
    "frames": [
        {"frame": "", "owner": None, "input": {"n": 1}, "index": 0, "open": 2, "dead": False,
         "fired": ["a", "M"], "arrivals": {"j": {"0": [True, "a", 2]}}},
    ],
    "constructs": [
        {"key": ["M", ""], "attempt": 2, "items": [5, 6], "next_index": 2, "active": [1],
         "results": {"0": 50}, "value": None, "frames": ["M@2[0]", "M@2[1]"], "done": False},
    ],
}  # fmt: skip


async def test_ensure_schema_converts_states_stored_whole(pg_store: PostgresContext) -> None:
    await pg_store.create_run(record("r1"), {})
    assert await save(pg_store, "r1", 1)
    states = psycopg.sql.Identifier(pg_store.tables.states)
    async with pg_store._pool.connection() as conn:
        await conn.execute(
            psycopg.sql.SQL("UPDATE {} SET document = %s").format(states),
            (psycopg.types.json.Jsonb(_LEGACY_DOCUMENT),),
        )
    await pg_store.ensure_schema()
    await pg_store.ensure_schema()  # idempotent once converted
    state = await pg_store.load_state("r1")
    assert state is not None
    assert state.version == 2
    assert state.header == {
        "status": "running", "busy": 1, "awaiting": 0, "settled": False, "errors": [],
    }  # fmt: skip
    assert state.records == {
        '["i"]': {"n": 1},
        '["n","","a"]': {"status": "succeeded", "attempt": 1, "output": 2, "resolved": True},
        '["n","","M"]': {"status": "running", "attempt": 2, "input": [5, 6]},
        '["f",""]': {"owner": None, "input": {"n": 1}, "index": 0},
        '["o",""]': [2, False],
        '["x","","a"]': 1,
        '["x","","M"]': 1,
        '["a","","j",0]': [True, "a", 2],
        '["c","","M"]': {"attempt": 2, "next_index": 2, "value": None, "done": False},
        '["ci","","M",2]': [5, 6],
        '["cr","","M",2,0]': 50,
    }
    delta = await pg_store.load_state("r1", since=1)
    assert delta is not None
    assert delta.records == state.records  # converted records count as the current version's


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
