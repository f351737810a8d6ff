"""The distribution's public surface."""

import flowcraft.rabbitmq
from flowcraft.core.redis import RedisCoordinationStore
from flowcraft.rabbitmq.__about__ import __version__


def test_facade_exports_exactly_the_components() -> None:
    assert sorted(flowcraft.rabbitmq.__all__) == [
        "PostgresContext",
        "RabbitMqAdapter",
        "RabbitMqBackend",
        "RabbitMqDelivery",
        "RedisCoordinationStore",
        "__version__",
        "create_rabbitmq_reconciler",
    ]
    assert flowcraft.rabbitmq.__version__ == __version__


def test_redis_store_is_the_one_from_core() -> None:
    assert flowcraft.rabbitmq.RedisCoordinationStore is RedisCoordinationStore


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)


def test_adapter_declares_its_capabilities() -> None:
    adapter = flowcraft.rabbitmq.RabbitMqAdapter("amqp://guest:guest@127.0.0.1:1/%2F", prefix="t")
    caps = adapter.capabilities
    assert (caps.native_delay, caps.max_delay, caps.dead_letter, caps.dedup) == (
        True,
        None,
        True,
        False,
    )
    assert (adapter.queue_name, adapter.dead_letter_queue_name) == ("t.jobs", "t.dead")


def test_backend_is_discoverable_by_name() -> None:
    from flowcraft.core.backends import backend_names, load_backend_factory

    assert "rabbitmq" in backend_names()
    factory = load_backend_factory("rabbitmq", {"amqp_url": "amqp://x@127.0.0.1:1/%2F"})
    assert isinstance(factory, flowcraft.rabbitmq.RabbitMqBackend)
    assert factory.amqp_url == "amqp://x@127.0.0.1:1/%2F"
    assert factory.capabilities == {
        "coordination",
        "dead_letter",
        "delayed_delivery",
        "result_notices",
        "result_reads",
        "run_notifications",
        "started_runs",
    }
