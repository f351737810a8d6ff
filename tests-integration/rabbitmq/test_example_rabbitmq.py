"""examples/rabbitmq_worker.py (the package README's example) runs against the real services."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from flowcraft.rabbitmq import PostgresContext, RabbitMqAdapter

ROOT = Path(__file__).resolve().parents[2]


async def test_rabbitmq_example_runs(
    monkeypatch: pytest.MonkeyPatch, rabbitmq_url: str, postgres_url: str, redis_url: str
) -> None:
    monkeypatch.setenv("FLOWCRAFT_RABBITMQ_URL", rabbitmq_url)
    monkeypatch.setenv("FLOWCRAFT_POSTGRES_URL", postgres_url)
    monkeypatch.setenv("FLOWCRAFT_REDIS_URL", redis_url)
    monkeypatch.syspath_prepend(str(ROOT))
    path = ROOT / "examples" / "rabbitmq_worker.py"
    spec = importlib.util.spec_from_file_location("rabbitmq_worker_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefix = f"ex{uuid.uuid4().hex[:8]}"
    try:
        results = await module.main(prefix)
    finally:
        store = PostgresContext(postgres_url, table_prefix=prefix)
        await store.drop_schema()
        await store.close()
        queue = RabbitMqAdapter(rabbitmq_url, prefix=prefix)
        await queue.delete_queues()
        await queue.close()
    assert [r["status"] for r in results] == ["completed"] * 3
    assert [r["output"] for r in results] == [{"rows": 3, "total_eur": 252.82}] * 3
