"""``flowcraft mermaid FILE``: render a blueprint (optionally a run's states) as Mermaid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowcraft.core._analysis.mermaid import to_mermaid
from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    add_file_arguments,
    read_blueprint,
    report,
    write_output,
)


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    parser = subcommands.add_parser("mermaid", help="render a blueprint as a Mermaid flowchart")
    add_file_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (e.g. out.mmd)")
    parser.add_argument("--direction", choices=["TD", "LR", "BT", "RL"], default="TD")
    parser.add_argument(
        "--states", metavar="JSON_FILE", help="colour nodes by a JSON mapping node id -> state"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render and print or write the chart."""
    loaded = read_blueprint(args)
    if isinstance(loaded, list):
        report(loaded, as_json=False)
        return EXIT_PROBLEMS
    states = _states(args.states) if args.states else None
    try:
        chart = to_mermaid(loaded, states, direction=args.direction)
    except ValueError as exc:
        raise UsageError(f"{args.states}: {exc}") from None
    write_output(chart, args.output)
    return EXIT_OK


def _states(path: str) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read states from {path!r}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise UsageError(f"{path}: states must be a JSON object of node id -> state")
    return {str(key): value for key, value in data.items()}
