"""The distribution's public surface."""

import flowcraft.kafka
from flowcraft.kafka.__about__ import __version__


def test_facade_exports() -> None:
    assert sorted(flowcraft.kafka.__all__) == sorted(["KafkaAdapter", "__version__"])
    assert flowcraft.kafka.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)
