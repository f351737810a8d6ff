"""PostgreSQL answers a real round trip with psycopg 3 (sync and async)."""

import uuid

import psycopg
from psycopg.types.json import Jsonb


def test_jsonb_round_trip(postgres_url: str) -> None:
    table = f"smoke_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (run_id text PRIMARY KEY, data jsonb NOT NULL)")
        try:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", ("r1", Jsonb({"a": 1})))
            conn.execute(
                f"UPDATE {table} SET data = data || %s WHERE run_id = %s", (Jsonb({"b": 2}), "r1")
            )
            row = conn.execute(f"SELECT data FROM {table} WHERE run_id = %s", ("r1",)).fetchone()
            assert row == ({"a": 1, "b": 2},)
        finally:
            conn.execute(f"DROP TABLE {table}")


async def test_async_connection(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        cur = await conn.execute("SELECT current_user, current_database()")
        assert await cur.fetchone() == ("flowcraft", "flowcraft")
