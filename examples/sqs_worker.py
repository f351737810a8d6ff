"""Run the ETL example on Amazon SQS + DynamoDB: a worker, a client and a reconciler.

Against a local emulator, start it first (``python3 tools/services start --only moto``), then,
from the repository root::

    python -m examples.sqs_worker

The endpoint comes from ``FLOWCRAFT_AWS_ENDPOINT_URL`` (default: the emulator on
http://127.0.0.1:15000); set it to an empty string to use AWS itself (region and credentials
from boto3's chain). The namespace's tables (``<ns>-contexts``, ``<ns>-statuses``,
``<ns>-coordination``) and queues (``<ns>-jobs``, ``<ns>-dead``) are created if missing and
left in place.

It starts two workers in this process (in production: ``flowcraft worker --backend sqs`` in as
many processes as you like), starts three runs through the client, waits for their results and
runs one reconciler pass.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from flowcraft.core import Client, Worker, load_blueprint
from flowcraft.sqs import DynamoDbContext, SqsAdapter, SqsBackend, create_sqs_reconciler

HERE = Path(__file__).resolve().parent
ENDPOINT = os.environ.get("FLOWCRAFT_AWS_ENDPOINT_URL", "http://127.0.0.1:15000")


async def main(prefix: str = "example") -> list[dict[str, object]]:
    """Run three ETL runs on SQS and DynamoDB and return their results."""
    from examples.etl.nodes import registry  # noqa: PLC0415 - run from the repository root

    blueprint = load_blueprint(HERE / "etl" / "etl.yaml", registry=registry)
    orders = json.loads((HERE / "etl" / "input.json").read_text())
    factory = SqsBackend(endpoint_url=ENDPOINT or None, visibility_timeout=30)
    backend = await factory.create(prefix)  # tables and queues, created if missing
    assert isinstance(backend.queue, SqsAdapter)
    assert isinstance(backend.store, DynamoDbContext)
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
        reconciler = create_sqs_reconciler(
            adapter=backend.queue, context=backend.store, blueprints=[blueprint],
            stalled_threshold_seconds=300,
        )  # fmt: skip
        print("reconciler:", (await reconciler.run()).as_dict())
    finally:
        await client.close()
        for worker in workers:
            worker.stopping.set()
        await asyncio.gather(*tasks)
        for queue in queues:
            await queue.close()
        await factory.close(backend)  # closes the client's queue, the stores and the clients
    return results


if __name__ == "__main__":
    for result in asyncio.run(main()):
        print(json.dumps({k: result[k] for k in ("run_id", "status", "output")}))
