"""The World conformance suite on InMemoryWorld (the plugin's default factory)."""

from flowcraft.core.testing.world_suite import *  # noqa: F403
