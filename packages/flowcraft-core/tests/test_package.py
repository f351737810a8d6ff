"""The distribution's public surface and packaging facts."""

import flowcraft.core
from flowcraft.core.__about__ import __version__


def test_facade_exports_version() -> None:
    assert "__version__" in flowcraft.core.__all__
    assert flowcraft.core.__version__ == __version__
