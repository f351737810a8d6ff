"""The distribution's public surface while it holds no behaviour yet."""

import flowcraft.rabbitmq
from flowcraft.rabbitmq.__about__ import __version__


def test_facade_exports_only_the_version() -> None:
    assert flowcraft.rabbitmq.__all__ == ["__version__"]
    assert flowcraft.rabbitmq.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)
