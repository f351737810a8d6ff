"""Redis answers a real round trip with redis-py."""

import uuid

import redis


def test_set_get_and_atomic_set_add(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    key = f"smoke:{uuid.uuid4()}"
    try:
        assert client.set(key, "value", ex=60)
        assert client.get(key) == "value"
        assert client.sadd(f"{key}:set", "a") == 1
        assert client.sadd(f"{key}:set", "a") == 0
    finally:
        client.delete(key, f"{key}:set")
        client.close()
