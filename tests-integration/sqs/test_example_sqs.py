"""examples/sqs_worker.py (the package README's example) runs against SQS and DynamoDB (moto)."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from flowcraft.sqs import SqsBackend

ROOT = Path(__file__).resolve().parents[2]


async def test_sqs_example_runs(monkeypatch: pytest.MonkeyPatch, aws_endpoint_url: str) -> None:
    monkeypatch.setenv("FLOWCRAFT_AWS_ENDPOINT_URL", aws_endpoint_url)
    monkeypatch.syspath_prepend(str(ROOT))
    path = ROOT / "examples" / "sqs_worker.py"
    spec = importlib.util.spec_from_file_location("sqs_worker_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefix = f"ex{uuid.uuid4().hex[:8]}"
    try:
        results = await module.main(prefix)
    finally:  # the example leaves its tables and queues in place: remove them
        factory = SqsBackend(endpoint_url=aws_endpoint_url)
        await factory.destroy(await factory.create(prefix))
    assert [r["status"] for r in results] == ["completed"] * 3
    assert [r["output"] for r in results] == [{"rows": 3, "total_eur": 252.82}] * 3
