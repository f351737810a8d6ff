"""``--log-level`` and ``--log-format`` of the long-running commands (``worker``, ``reconcile``).

Records go to stderr, as text (``time LEVEL logger: message``) or one JSON object per line
(:class:`~flowcraft.core._runtime.logs.JsonFormatter`); the lifecycle events of the process's
bus become records through one :class:`~flowcraft.core._runtime.logs.EventLogger`, and what a
node logs is stamped with its run, node and attempt (``NodeLogFilter``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from flowcraft.core._runtime.context import NodeLogFilter
from flowcraft.core._runtime.events import EventBus
from flowcraft.core._runtime.logs import EventLogger, JsonFormatter

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(flowcraft_node)s%(message)s"


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format``."""
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log records of this level and above on stderr; INFO: one line per node outcome "
        "and per run start and end, DEBUG: node starts too (default: WARNING)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line with run_id, node_id, attempt, "
        "blueprint, blueprint_version, duration, ... (default: text)",
    )


def configure_logging(args: argparse.Namespace, bus: EventBus) -> None:
    """Log to stderr as ``args`` asks, the lifecycle events of ``bus`` included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NodeLogFilter())
    formatter = JsonFormatter() if args.log_format == "json" else logging.Formatter(_TEXT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(args.log_level)
    EventLogger().attach(bus)
