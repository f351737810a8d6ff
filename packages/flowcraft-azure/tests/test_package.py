"""The distribution's public surface."""

import flowcraft.azure
from flowcraft.azure.__about__ import __version__


def test_facade_exports_the_adapter_names() -> None:
    assert sorted(flowcraft.azure.__all__) == sorted(
        [
            "AzureBackend",
            "AzureDelivery",
            "AzureQueueAdapter",
            "CosmosDbContext",
            "RedisCoordinationStore",
            "__version__",
            "create_azure_reconciler",
        ]
    )
    assert flowcraft.azure.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)


def test_the_backend_is_registered_as_azure() -> None:
    from flowcraft.core.backends import load_backend_factory

    factory = load_backend_factory(
        "azure",
        {"queue_connection_string": "UseDevelopmentStorage=true", "cosmos_url": "https://x"},
    )
    assert type(factory) is flowcraft.azure.AzureBackend


def test_option_environment_names_every_variable_the_backend_reads() -> None:
    """Each declared option is a keyword of the factory, read from its variable."""
    import inspect

    from flowcraft.azure import AzureBackend

    env = AzureBackend.option_environment
    keywords = inspect.signature(AzureBackend).parameters
    assert set(env) <= set(keywords)
    assert env["cosmos_url"] == "FLOWCRAFT_COSMOS_URL"
    assert env["queue_connection_string"] == "FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING"
    assert env["redis_url"] == "FLOWCRAFT_REDIS_URL"


def test_the_backend_declares_its_capabilities() -> None:
    # run_notifications: the Cosmos DB store is wrapped in core's NotifyingRunStore (Redis)
    # started_runs: CosmosDbContext.create_started_run (one create_item), through the wrapper
    assert flowcraft.azure.AzureBackend.capabilities == {
        "coordination", "dead_letter", "delayed_delivery", "result_notices", "run_notifications",
        "started_runs",
    }  # fmt: skip
