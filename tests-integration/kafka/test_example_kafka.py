"""examples/kafka_worker.py (the package README's example) runs on Kafka, Cassandra and Redis."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from flowcraft.kafka import KafkaBackend

ROOT = Path(__file__).resolve().parents[2]


async def test_kafka_example_runs(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, cassandra_contact: tuple[str, int],
    redis_url: str,
) -> None:  # fmt: skip
    host, port = cassandra_contact
    monkeypatch.setenv("FLOWCRAFT_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("FLOWCRAFT_CASSANDRA_CONTACT_POINTS", f"{host}:{port}")
    monkeypatch.setenv("FLOWCRAFT_REDIS_URL", redis_url)
    monkeypatch.setenv("FLOWCRAFT_CASSANDRA_KEYSPACE", "flowcraft_tests")
    monkeypatch.syspath_prepend(str(ROOT))
    path = ROOT / "examples" / "kafka_worker.py"
    spec = importlib.util.spec_from_file_location("kafka_worker_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefix = f"ex{uuid.uuid4().hex[:8]}"
    try:
        results = await module.main(prefix)
    finally:  # the example leaves its topics and rows in place: remove them
        factory = KafkaBackend()
        await factory.destroy(await factory.create(prefix))
    assert [r["status"] for r in results] == ["completed"] * 3
    assert [r["output"] for r in results] == [{"rows": 3, "total_eur": 252.82}] * 3
