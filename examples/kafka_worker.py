"""Run the ETL example on Kafka + Cassandra + Redis: two workers, a client and a reconciler.

Start the servers first (``python3 tools/services start kafka cassandra redis``), then, from
the repository root::

    python -m examples.kafka_worker

Endpoints come from ``FLOWCRAFT_KAFKA_BOOTSTRAP``, ``FLOWCRAFT_CASSANDRA_CONTACT_POINTS`` and
``FLOWCRAFT_REDIS_URL`` (defaults: the local servers of ``tools/services``). The namespace's
topics (``<ns>-jobs``, ``<ns>-jobs.dead``, ``<ns>-jobs.delay-0..5``) and the keyspace's tables
are created if missing and left in place.

It starts two workers in this process (in production: ``flowcraft worker --backend kafka`` in
as many processes as the jobs topic has partitions), starts three runs through the client,
waits for their results and runs one reconciler pass.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from flowcraft.core import Client, Worker, load_blueprint
from flowcraft.core.redis import NotifyingRunStore
from flowcraft.kafka import CassandraContext, KafkaAdapter, KafkaBackend, create_kafka_reconciler

HERE = Path(__file__).resolve().parent


async def main(prefix: str = "example") -> list[dict[str, object]]:
    """Run three ETL runs on Kafka and Cassandra and return their results."""
    from examples.etl.nodes import registry  # noqa: PLC0415 - run from the repository root

    blueprint = load_blueprint(HERE / "etl" / "etl.yaml", registry=registry)
    orders = json.loads((HERE / "etl" / "input.json").read_text())
    factory = KafkaBackend(partitions=4)
    backend = await factory.create(prefix)  # topics and tables, created if missing
    assert isinstance(backend.queue, KafkaAdapter)
    assert isinstance(backend.store, NotifyingRunStore)  # tells Client.result when runs end
    assert isinstance(backend.store.inner, CassandraContext)
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
        reconciler = create_kafka_reconciler(
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
        await factory.close(backend)  # the connection, the Cassandra cluster, Redis
    return results


if __name__ == "__main__":
    for result in asyncio.run(main()):
        print(json.dumps({k: result[k] for k in ("run_id", "status", "output")}))
