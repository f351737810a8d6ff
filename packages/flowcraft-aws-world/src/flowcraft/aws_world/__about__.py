"""Version of the flowcraft-aws-world distribution (read by hatch; bumped by tools/release)."""

__version__ = "0.1.0"
