"""flowcraft-core: the Flowcraft workflow engine.

The public API of the engine is re-exported here; implementation modules are private.
"""

from flowcraft.core.__about__ import __version__

__all__ = ["__version__"]
