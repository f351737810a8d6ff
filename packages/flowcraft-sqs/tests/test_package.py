"""The distribution's public surface."""

import flowcraft.sqs
import pytest
from flowcraft.core.backends import BackendOptionError, backend_names, load_backend_factory
from flowcraft.sqs.__about__ import __version__


def test_facade_exports_exactly_the_components() -> None:
    assert sorted(flowcraft.sqs.__all__) == [
        "DynamoDbContext",
        "DynamoDbCoordinationStore",
        "SqsAdapter",
        "SqsBackend",
        "SqsDelivery",
        "__version__",
        "create_sqs_reconciler",
    ]
    assert flowcraft.sqs.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)


def test_adapter_declares_its_capabilities() -> None:
    adapter = flowcraft.sqs.SqsAdapter(
        queue_url="http://127.0.0.1:1/000000000000/t-jobs",
        dead_letter_queue_url="http://127.0.0.1:1/000000000000/t-dead",
        endpoint_url="http://127.0.0.1:1",
    )
    caps = adapter.capabilities
    assert (caps.native_delay, caps.max_delay, caps.dead_letter, caps.dedup, caps.sticky) == (
        True, 900.0, True, False, True,
    )  # fmt: skip
    off = flowcraft.sqs.SqsAdapter(
        queue_url="http://127.0.0.1:1/000000000000/t-jobs",
        endpoint_url="http://127.0.0.1:1",
        sticky_delay=None,
    )
    assert not off.capabilities.sticky


def test_backend_is_discoverable_by_name_with_string_options() -> None:
    assert "sqs" in backend_names()
    factory = load_backend_factory(
        "sqs", {"endpoint_url": "http://127.0.0.1:1", "visibility_timeout": "5"}
    )
    assert isinstance(factory, flowcraft.sqs.SqsBackend)
    assert (factory.endpoint_url, factory.visibility_timeout) == ("http://127.0.0.1:1", 5)
    assert factory.capabilities == {
        "coordination", "dead_letter", "delayed_delivery", "result_reads", "started_runs",
    }  # fmt: skip


def test_bad_options_are_named() -> None:
    with pytest.raises(BackendOptionError, match="queue_url"):
        load_backend_factory("sqs", {"queue_url": "x"})
    with pytest.raises(ValueError, match="visibility_timeout"):
        flowcraft.sqs.SqsBackend(visibility_timeout="soon")
    with pytest.raises(ValueError, match=r"1\.\.43200"):
        flowcraft.sqs.SqsBackend(visibility_timeout=0)
