"""Every behavioural and fault test of the suite, on the in-memory backend."""

from flowcraft.core.testing.suite import *  # noqa: F403
