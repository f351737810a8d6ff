"""Run the ETL example on Azure Queue Storage + Cosmos DB + Redis: workers, a client, a reconciler.

Against the local servers, start them first (``python3 tools/services start azurite cosmos
redis``), then, from the repository root::

    python -m examples.azure_worker

The connections come from the variables ``flowcraft worker --backend azure`` reads
(``FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING``, ``FLOWCRAFT_COSMOS_URL`` with
``FLOWCRAFT_COSMOS_KEY`` or DefaultAzureCredential, ``FLOWCRAFT_COSMOS_CA_FILE``,
``FLOWCRAFT_REDIS_URL``); each one not set defaults to the local server (Azurite's and the
Cosmos emulator's well-known development keys, the local server's private CA). The namespace's
queues (``<ns>-jobs``, ``<ns>-poison``) and containers (``<ns>-contexts``, ``<ns>-statuses``,
database ``flowcraft``) are created if missing and left in place.

It starts two workers in this process (in production: ``flowcraft worker --backend azure`` in
as many processes as you like), starts three runs through the client, waits for their results
and runs one reconciler pass.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from flowcraft.azure import AzureBackend, AzureQueueAdapter, create_azure_reconciler
from flowcraft.core import Client, Worker, load_blueprint

HERE = Path(__file__).resolve().parent
#: The local servers of ``tools/services`` (public development keys, not secrets).
LOCAL = {
    "FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        "KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    ),
    "FLOWCRAFT_COSMOS_URL": "https://127.0.0.1:18081",
    "FLOWCRAFT_COSMOS_KEY": (
        "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
    ),
    "FLOWCRAFT_COSMOS_CA_FILE": str(HERE.parent / ".services" / "cosmos" / "tls" / "ca.pem"),
    "FLOWCRAFT_REDIS_URL": "redis://127.0.0.1:16379/0",
}


def backend_factory() -> AzureBackend:
    """The backend from the environment, the local servers where a variable is not set."""
    settings = {name: os.environ.get(name) or local for name, local in LOCAL.items()}
    return AzureBackend(
        queue_connection_string=settings["FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING"],
        cosmos_url=settings["FLOWCRAFT_COSMOS_URL"],
        cosmos_key=settings["FLOWCRAFT_COSMOS_KEY"],
        cosmos_ca_file=settings["FLOWCRAFT_COSMOS_CA_FILE"] if os.path.exists(
            settings["FLOWCRAFT_COSMOS_CA_FILE"]) else None,
        redis_url=settings["FLOWCRAFT_REDIS_URL"],
        visibility_timeout=30,
    )  # fmt: skip


async def main(prefix: str = "example") -> list[dict[str, object]]:
    """Run three ETL runs on Azure and return their results."""
    from examples.etl.nodes import registry  # noqa: PLC0415 - run from the repository root

    blueprint = load_blueprint(HERE / "etl" / "etl.yaml", registry=registry)
    orders = json.loads((HERE / "etl" / "input.json").read_text())
    factory = backend_factory()
    backend = await factory.create(prefix)  # queues, database and containers, if missing
    assert isinstance(backend.queue, AzureQueueAdapter)
    assert backend.worker_queue is not None
    queues = [await backend.worker_queue() for _ in range(2)]  # a consumer per worker
    workers = [
        Worker(queue=q, store=backend.store, coordination=backend.coordination,
               registry=registry, blueprints=[blueprint], concurrency=8)
        for q in queues
    ]  # fmt: skip
    tasks = [asyncio.create_task(w.run()) for w in workers]
    client = Client(queue=backend.queue, store=backend.store, blueprints=[blueprint])
    try:
        handles = [await client.start("etl", orders) for _ in range(3)]
        results = [(await h.result(timeout=60)).to_dict() for h in handles]
        reconciler = create_azure_reconciler(
            adapter=backend.queue, context=backend.store,  # type: ignore[arg-type]
            blueprints=[blueprint], stalled_threshold_seconds=300,
        )  # fmt: skip
        print("reconciler:", (await reconciler.run()).as_dict())
    finally:
        await client.close()
        for worker in workers:
            worker.stopping.set()
        await asyncio.gather(*tasks)
        for queue in queues:
            await queue.close()
        await factory.close(backend)  # closes the client's queue, the store and the clients
    return results


if __name__ == "__main__":
    for result in asyncio.run(main()):
        print(json.dumps({k: result[k] for k in ("run_id", "status", "output")}))
