"""RedisCoordinationStore without a server: key layout, run ownership, error translation."""

import inspect

import pytest
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.core.redis import RedisCoordinationStore, default_run_of_key
from flowcraft.core.redis._errors import classify_redis, redis_errors
from redis import exceptions as rx
from redis.asyncio import Redis


def redis_classes() -> list[type[BaseException]]:
    return [
        cls for _, cls in inspect.getmembers(rx, inspect.isclass) if issubclass(cls, rx.RedisError)
    ]


@pytest.mark.parametrize("cls", redis_classes(), ids=lambda cls: cls.__name__)
def test_every_redis_error_is_translated(cls: type[BaseException]) -> None:
    message = "7 boom:1" if issubclass(cls, rx.AskError) else "boom"  # redirects parse theirs
    exc = cls(message)
    with pytest.raises(BackendError) as caught, redis_errors("op"):
        raise exc
    assert caught.value.__cause__ is exc
    assert "boom" in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (rx.ConnectionError("refused"), TransientBackendError),
        (rx.TimeoutError("slow"), TransientBackendError),
        (rx.BusyLoadingError("loading"), TransientBackendError),
        (rx.ReadOnlyError("replica"), TransientBackendError),
        (ConnectionResetError("reset"), TransientBackendError),
        (rx.AuthenticationError("bad password"), PermanentBackendError),
        (rx.ResponseError("WRONGTYPE"), PermanentBackendError),
        (rx.DataError("bad arg"), PermanentBackendError),
    ],
)
def test_redis_classification(exc: BaseException, kind: type[BackendError]) -> None:
    assert classify_redis(exc) is kind


@pytest.mark.parametrize(
    ("key", "run_id"),
    [
        ("run:r1:join:a", "r1"),
        ("run:r1", "r1"),
        ("run::x", None),
        ("global:thing", None),
        ("runner:x", None),
    ],
)
def test_default_run_of_key(key: str, run_id: str | None) -> None:
    assert default_run_of_key(key) == run_id


async def test_key_layout_and_reserved_words() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")
    store = RedisCoordinationStore(client, prefix="ns")
    assert store.key("run:r1:x") == "ns:run:r1:x"
    assert store.run_index("r1") == "ns:runkeys:r1"
    for reserved in ("lock:x", "fence:x", "runkeys:x"):
        with pytest.raises(ValueError, match="reserved"):
            store.key(reserved)
    with pytest.raises(ValueError, match="ttl"):
        await store.acquire_lock("x", ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        await store.set_add("x", "m", ttl=-1)
    await client.aclose()


async def test_an_unreachable_server_is_a_transient_error() -> None:
    store = RedisCoordinationStore("redis://127.0.0.1:1/0")
    with pytest.raises(TransientBackendError) as caught:
        await store.get("run:r:x")
    assert isinstance(caught.value.__cause__, rx.ConnectionError)
    await store.close()
