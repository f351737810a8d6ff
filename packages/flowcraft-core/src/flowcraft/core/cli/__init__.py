"""The ``flowcraft`` command.

Exit codes: 0 success, 1 the input was checked and has problems (or the run failed),
2 usage error (bad arguments, unreadable file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowcraft.core.__about__ import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowcraft", description="Flowcraft workflow engine.")
    parser.add_argument("--version", action="version", version=f"flowcraft {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = _parser()
    parser.parse_args(argv)
    parser.print_help(sys.stderr)
    return 2
