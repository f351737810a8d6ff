"""Helpers shared by the subcommands: exit codes, loading files, printing problems."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Container, Iterable
from pathlib import Path
from typing import TextIO

from flowcraft.core._expressions import DEFAULT_BUDGET
from flowcraft.core._model import problems as codes
from flowcraft.core._model.compat import Dialect
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._model.load import load_blueprint
from flowcraft.core.errors import BlueprintError, Problem

EXIT_OK = 0
"""Success: the input is valid (lint: no findings at the failing severity)."""
EXIT_PROBLEMS = 1
"""The input was read and has problems."""
EXIT_USAGE = 2
"""Bad arguments, or the file is missing or not JSON/YAML."""


class UsageError(Exception):
    """A problem with the command line or the files it names (exit code 2)."""


def add_expression_budget(parser: argparse.ArgumentParser) -> None:
    """Add ``--expression-budget SECONDS`` (read it back with :func:`expression_budget`)."""
    parser.add_argument(
        "--expression-budget",
        type=float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"work one expression evaluation may take (default {DEFAULT_BUDGET:g}); an "
        "evaluation past it fails its node with an ExpressionError",
    )


def expression_budget(args: argparse.Namespace) -> float:
    """The ``--expression-budget`` given (a usage error unless it is > 0)."""
    seconds = float(args.expression_budget)
    if not seconds > 0:
        raise UsageError(f"--expression-budget wants seconds > 0, got {seconds:g}")
    return seconds


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the FILE argument and the options every blueprint-reading command takes."""
    parser.add_argument("file", metavar="FILE", help="blueprint file (JSON or YAML)")
    parser.add_argument(
        "--dialect",
        choices=["auto", "python", "typescript"],
        default="auto",
        help="read camelCase/millisecond TypeScript blueprints (default: detect)",
    )


def read_blueprint(
    args: argparse.Namespace, registry: Container[str] | None = None
) -> Blueprint | list[Problem]:
    """Load the FILE argument; return the blueprint or its problems.

    Raises:
        UsageError: The file is missing or is not JSON/YAML.
    """
    dialect: Dialect = args.dialect
    try:
        return load_blueprint(args.file, registry=registry, dialect=dialect)
    except BlueprintError as exc:
        if exc.problems and exc.problems[0].code == codes.UNREADABLE.code:
            raise UsageError(f"{args.file}: {exc.problems[0].message}") from None
        return list(exc.problems)


def json_argument(text: str, option: str) -> object:
    """An option's JSON value: JSON text, or ``@FILE`` to read it from a file."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def report(problems: Iterable[Problem], *, as_json: bool, stream: TextIO | None = None) -> None:
    """Print problems: a JSON list on stdout, or ``path: CODE name: message`` lines on stderr."""
    items = list(problems)
    if as_json:
        print(json.dumps([problem.to_dict() for problem in items], indent=2))
        return
    out = stream or sys.stderr
    for problem in items:
        suffix = "" if problem.severity == "error" else f" [{problem.severity}]"
        print(f"{problem}{suffix}", file=out)


def plural(count: int, word: str) -> str:
    """Return ``"1 problem"`` / ``"2 problems"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def write_output(text: str, output: str | None) -> None:
    """Write ``text`` to the file ``output``, or to stdout when it is ``None``.

    Raises:
        UsageError: The file cannot be written.
    """
    if output is None:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {output!r}: {exc.strerror or exc}") from None
