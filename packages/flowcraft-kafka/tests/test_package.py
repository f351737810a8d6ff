"""The distribution's public surface."""

import flowcraft.kafka
import pytest
from flowcraft.kafka.__about__ import __version__


def test_facade_exports() -> None:
    assert sorted(flowcraft.kafka.__all__) == sorted([
        "CassandraContext", "KafkaAdapter", "KafkaBackend", "RedisCoordinationStore",
        "__version__", "create_kafka_reconciler",
    ])  # fmt: skip
    assert flowcraft.kafka.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)


def test_the_backend_is_registered_under_kafka() -> None:
    from importlib.metadata import entry_points

    (found,) = [ep for ep in entry_points(group="flowcraft.backends") if ep.name == "kafka"]
    assert found.load() is flowcraft.kafka.KafkaBackend
    assert set(flowcraft.kafka.KafkaBackend.option_environment) >= {
        "bootstrap_servers", "cassandra_contact_points", "redis_url",
    }  # fmt: skip


def test_the_backend_declares_its_capabilities() -> None:
    # run_notifications: the Cassandra store is wrapped in core's NotifyingRunStore (Redis);
    # started_runs, result_reads: CassandraContext's create_started_run and read_result
    assert flowcraft.kafka.KafkaBackend.capabilities == {
        "coordination", "dead_letter", "delayed_delivery", "result_notices", "result_reads",
        "run_notifications", "started_runs",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sticky_limit": "0"}, "option sticky_limit: 0 is outside 1..1000000"),
        ({"sticky_limit": "many"}, "option sticky_limit: 'many' is not a whole number"),
        ({"prefetch": "0"}, "option prefetch: 0 is outside 1..100000"),
    ],
)
def test_a_wrong_backend_option_is_named(options: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        flowcraft.kafka.KafkaBackend(**options)


def test_the_sticky_limit_defaults_above_the_prefetch() -> None:
    backend = flowcraft.kafka.KafkaBackend()
    assert (backend.prefetch, backend.sticky_limit) == (64, 512)
    assert flowcraft.kafka.KafkaBackend(sticky_limit="3").sticky_limit == 3


def test_the_adapter_refuses_a_sticky_limit_below_one() -> None:
    with pytest.raises(ValueError, match="sticky_limit 0 is not positive"):
        flowcraft.kafka.KafkaAdapter(config={"bootstrap.servers": "x"}, sticky_limit=0)
