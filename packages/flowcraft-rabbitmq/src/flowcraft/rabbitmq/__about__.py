"""Version of the flowcraft-rabbitmq distribution (read by hatch; bumped by tools/release)."""

__version__ = "0.1.0"
