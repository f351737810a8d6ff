"""The distribution's public surface."""

import flowcraft.azure
from flowcraft.azure.__about__ import __version__


def test_facade_exports_the_adapter_names() -> None:
    assert sorted(flowcraft.azure.__all__) == sorted(
        ["AzureDelivery", "AzureQueueAdapter", "__version__"]
    )
    assert flowcraft.azure.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)
