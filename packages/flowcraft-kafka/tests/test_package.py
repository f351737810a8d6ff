"""The distribution's public surface."""

import flowcraft.kafka
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
