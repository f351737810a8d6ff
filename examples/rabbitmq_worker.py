"""Run the ETL example on RabbitMQ + PostgreSQL + Redis: a worker, a client and a reconciler.

Start the services first (``python3 tools/services start --only rabbitmq,postgres,redis`` or
``docker compose up -d rabbitmq postgres redis``), then::

    python examples/rabbitmq_worker.py

It starts two workers in this process (in production: ``flowcraft worker --backend rabbitmq``
in as many processes as you like), starts three runs through the client, waits for their
results and runs one reconciler pass.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from flowcraft.core import Client, Worker, load_blueprint
from flowcraft.rabbitmq import (
    PostgresContext,
    RabbitMqAdapter,
    RedisCoordinationStore,
    create_rabbitmq_reconciler,
)

HERE = Path(__file__).resolve().parent
AMQP = os.environ.get("FLOWCRAFT_RABBITMQ_URL", "amqp://flowcraft:flowcraft@127.0.0.1:15673/%2F")
POSTGRES = os.environ.get(
    "FLOWCRAFT_POSTGRES_URL", "postgresql://flowcraft:flowcraft@127.0.0.1:15432/flowcraft"
)
REDIS = os.environ.get("FLOWCRAFT_REDIS_URL", "redis://127.0.0.1:16379/0")


async def main(prefix: str = "example") -> list[dict[str, object]]:
    """Run three ETL runs on RabbitMQ and return their results."""
    from examples.etl.nodes import registry  # noqa: PLC0415 - run from the repository root

    blueprint = load_blueprint(HERE / "etl" / "etl.yaml", registry=registry)
    orders = json.loads((HERE / "etl" / "input.json").read_text())
    store = PostgresContext(POSTGRES, table_prefix=prefix)
    await store.ensure_schema()
    coordination = RedisCoordinationStore(REDIS, prefix=prefix)
    queues = [RabbitMqAdapter(AMQP, prefix=prefix, prefetch=8) for _ in range(3)]
    workers = [
        Worker(queue=q, store=store, coordination=coordination, registry=registry,
               blueprints=[blueprint], concurrency=8)
        for q in queues[:2]
    ]  # fmt: skip
    tasks = [asyncio.create_task(w.run()) for w in workers]
    client = Client(queue=queues[2], store=store, blueprints=[blueprint])
    try:
        handles = [await client.start("etl", orders) for _ in range(3)]
        results = [(await h.result(timeout=60)).to_dict() for h in handles]
        reconciler = create_rabbitmq_reconciler(
            adapter=queues[2], pg=store, blueprints=[blueprint], stalled_threshold_seconds=300
        )
        print("reconciler:", (await reconciler.run()).as_dict())
    finally:
        await client.close()
        for worker in workers:
            worker.stopping.set()
        await asyncio.gather(*tasks)
        for queue in queues:
            await queue.close()
        await coordination.close()
        await store.close()
    return results


if __name__ == "__main__":
    for result in asyncio.run(main()):
        print(json.dumps({k: result[k] for k in ("run_id", "status", "output")}))
