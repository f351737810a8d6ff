"""Version of the flowcraft-kafka distribution (read by hatch; bumped by tools/release)."""

__version__ = "0.1.0"
