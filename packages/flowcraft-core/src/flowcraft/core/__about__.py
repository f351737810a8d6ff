"""Version of the flowcraft-core distribution (read by hatch; bumped by tools/release)."""

__version__ = "0.1.0"
