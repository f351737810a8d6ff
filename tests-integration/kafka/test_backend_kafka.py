"""KafkaBackend: destroy leaves nothing of the namespace in Redis; its Cassandra sockets."""

from __future__ import annotations

import socket
import uuid

import redis.asyncio as redis
from flowcraft.kafka import KafkaBackend


async def _keys(redis_url: str, pattern: str) -> list[bytes]:
    client = redis.from_url(redis_url)
    try:
        return [key async for key in client.scan_iter(match=pattern, count=500)]
    finally:
        await client.aclose()


async def test_destroy_deletes_the_namespaces_redis_keys(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> None:
    host, port = cassandra_contact
    factory = KafkaBackend(bootstrap_servers=kafka_bootstrap, redis_url=redis_url,
                           cassandra_contact_points=f"{host}:{port}", partitions=1,
                           keyspace="flowcraft_tests")  # fmt: skip
    namespace, neighbour = f"d{uuid.uuid4().hex[:10]}", f"d{uuid.uuid4().hex[:10]}"
    backend, other = await factory.create(namespace), await factory.create(neighbour)
    try:
        for coordination in (backend.coordination, other.coordination):
            assert coordination is not None
            token = await coordination.acquire_lock("run:r1:join", ttl=60)  # lock and fence
            assert token is not None
            await coordination.release_lock("run:r1:join", token)  # the fence stays, no TTL
            assert await coordination.compare_and_set("run:r1:turn", None, "w1", ttl=60)
            assert await coordination.set_add("run:r1:seen", "a#1")  # a set, no TTL
        assert await _keys(redis_url, f"{namespace}:*")
        await factory.destroy(backend)
        assert await _keys(redis_url, f"{namespace}:*") == []
        assert await _keys(redis_url, f"{neighbour}:*")  # another namespace's keys stay
    finally:
        await factory.destroy(other)
    assert await _keys(redis_url, f"{neighbour}:*") == []


async def test_the_cassandra_connections_send_without_delay(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> None:
    """TCP_NODELAY on every connection: a save of a few KiB waited ~45 ms for a delayed ACK."""
    host, port = cassandra_contact
    factory = KafkaBackend(bootstrap_servers=kafka_bootstrap, redis_url=redis_url,
                           cassandra_contact_points=f"{host}:{port}", partitions=1,
                           keyspace="flowcraft_tests")  # fmt: skip
    backend = await factory.create(f"d{uuid.uuid4().hex[:10]}")
    try:
        holders = backend.extra["cluster"].get_connection_holders()
        sockets = [c._socket for holder in holders for c in holder.get_connections()]
        assert sockets
        for sock in sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await factory.destroy(backend)
