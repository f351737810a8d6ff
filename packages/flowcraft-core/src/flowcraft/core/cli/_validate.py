"""``flowcraft validate FILE``: check a blueprint and list every problem."""

from __future__ import annotations

import argparse
import sys

from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    add_file_arguments,
    plural,
    read_blueprint,
    report,
)
from flowcraft.core.cli._registry import import_registry


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    parser = subcommands.add_parser("validate", help="check a blueprint; exit 1 if invalid")
    add_file_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print problems as JSON on stdout")
    parser.add_argument(
        "--registry", metavar="MODULE:ATTR", help="check `uses` against this registry"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Validate the file and report."""
    registry = import_registry(args.registry) if args.registry else None
    loaded = read_blueprint(args, registry)
    problems = loaded if isinstance(loaded, list) else []
    report(problems, as_json=args.json)
    if problems:
        if not args.json:
            print(f"{args.file}: {plural(len(problems), 'problem')}", file=sys.stderr)
        return EXIT_PROBLEMS
    if not args.json and not isinstance(loaded, list):
        counts = f"{plural(len(loaded.nodes), 'node')}, {plural(len(loaded.edges), 'edge')}"
        print(f"{args.file}: valid blueprint {loaded.id!r} ({counts})")
    return EXIT_OK
