"""The ``flowcraft`` command.

Subcommands (one module each, so later issues add ``run``, ``worker`` and ``reconcile``)::

    flowcraft validate FILE [--json] [--registry MODULE:ATTR] [--dialect D]
    flowcraft lint FILE [--json] [--strict] [--dialect D]
    flowcraft schema [-o FILE]
    flowcraft mermaid FILE [-o out.mmd] [--direction TD|LR|BT|RL] [--states STATES.json]
    flowcraft run FILE --registry MODULE:ATTR [--input JSON|@FILE] [--resume NODE[:ACTION][=JSON]]
                  [--watch|--no-watch] [--mermaid OUT.mmd] [--timeout S] [--blueprint FILE]
    flowcraft worker --backend NAME [--option K=V] --registry MODULE:ATTR --blueprint FILE...
    flowcraft reconcile --backend NAME [--option K=V] --blueprint FILE... [--interval S]
    flowcraft conformance --backend NAME [--option K=V] [-- PYTEST ARGS]
    flowcraft ui --backend NAME [--option K=V] [--blueprint FILE...] [--port P] [--allow-actions]
    flowcraft --version

Commands that talk to a backend take ``--backend``, ``--option K=V``, ``--namespace`` and
``--config FILE``; each may come from the environment (``FLOWCRAFT_BACKEND``, ...) or a TOML
config file (``$FLOWCRAFT_CONFIG``, ``./flowcraft.toml``) instead: see ``_config``.

Exit codes: 0 success, 1 the input was checked and has problems (``run``: the run failed, was
cancelled or is left awaiting), 2 usage error (bad arguments, missing or unreadable file).
Problems go to stderr as ``path: CODE name: message`` lines; ``--json`` prints them to stdout
as a JSON list instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowcraft.core.__about__ import __version__
from flowcraft.core.cli import _distributed, _lint, _mermaid, _run, _runs, _schema, _ui, _validate
from flowcraft.core.cli._common import EXIT_PROBLEMS, EXIT_USAGE, UsageError
from flowcraft.core.errors import BackendError

_SUBCOMMANDS = (_validate, _lint, _schema, _mermaid, _run, _distributed, _runs, _ui)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowcraft",
        description="Flowcraft workflow engine.",
        epilog="Exit codes: 0 ok, 1 problems found, 2 usage error or unreadable file.",
    )
    parser.add_argument("--version", action="version", version=f"flowcraft {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except UsageError as exc:
        print(f"flowcraft: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:  # a server that is down or refuses: no traceback, exit 1
        print(f"flowcraft: backend error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:  # Ctrl-C outside a run (a run handles its own): the shell's code
        print("flowcraft: interrupted", file=sys.stderr)
        return 130
    return code
