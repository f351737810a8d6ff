"""The conformance suite against the in-memory backend (the reference run)."""

pytest_plugins = ["flowcraft.core.testing.plugin"]
