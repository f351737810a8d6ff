"""examples/azure_worker.py runs against Azurite, the Cosmos server and Redis."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

import pytest
from flowcraft.azure import AzureBackend

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.service("azurite"), pytest.mark.service("cosmos")]


async def test_azure_example_runs(
    monkeypatch: pytest.MonkeyPatch,
    azure_queue_connection_string: str,
    cosmos_endpoint: dict[str, str],
    redis_url: str,
) -> None:
    monkeypatch.setenv("FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING", azure_queue_connection_string)
    monkeypatch.setenv("FLOWCRAFT_COSMOS_URL", cosmos_endpoint["url"])
    monkeypatch.setenv("FLOWCRAFT_COSMOS_KEY", cosmos_endpoint["key"])
    monkeypatch.setenv("FLOWCRAFT_COSMOS_CA_FILE", cosmos_endpoint["ca_file"])
    monkeypatch.setenv("FLOWCRAFT_REDIS_URL", redis_url)
    monkeypatch.syspath_prepend(str(ROOT))
    path = ROOT / "examples" / "azure_worker.py"
    spec = importlib.util.spec_from_file_location("azure_worker_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prefix = f"ex{uuid.uuid4().hex[:8]}"
    try:
        results = await module.main(prefix)
    finally:  # the example leaves its queues and containers in place: remove them
        factory: AzureBackend = module.backend_factory()
        await factory.destroy(await factory.create(prefix))
    assert [r["status"] for r in results] == ["completed"] * 3
    assert [r["output"] for r in results] == [{"rows": 3, "total_eur": 252.82}] * 3
