"""``flowcraft lint FILE``: validation plus likely mistakes (warnings and infos)."""

from __future__ import annotations

import argparse
import sys

from flowcraft.core._analysis.lint import lint
from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    add_file_arguments,
    plural,
    read_blueprint,
    report,
)


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    parser = subcommands.add_parser("lint", help="validate, then report likely mistakes")
    add_file_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print findings as JSON on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Lint the file and report."""
    loaded = read_blueprint(args)
    findings = loaded if isinstance(loaded, list) else list(lint(loaded))
    report(findings, as_json=args.json)
    failing = [
        f for f in findings if f.severity == "error" or (args.strict and f.severity == "warning")
    ]
    if not args.json:
        print(f"{args.file}: {plural(len(findings), 'finding')}", file=sys.stderr)
    return EXIT_PROBLEMS if failing else EXIT_OK
