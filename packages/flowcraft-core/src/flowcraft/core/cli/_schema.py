"""``flowcraft schema``: print the JSON Schema of the blueprint format."""

from __future__ import annotations

import argparse
import json

from flowcraft.core._model.schema import blueprint_json_schema
from flowcraft.core.cli._common import EXIT_OK, write_output


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    parser = subcommands.add_parser("schema", help="print the JSON Schema of blueprints")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print or write the schema."""
    write_output(json.dumps(blueprint_json_schema(), indent=2) + "\n", args.output)
    return EXIT_OK
