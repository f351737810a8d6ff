"""Access to the CEL engine of the ``common-expression-language`` distribution.

The distribution's package ``cel`` imports its interactive CLI (rich, prompt_toolkit, typer) on
import, which costs about a second. Flowcraft only needs the compiled extension ``cel.cel``, so it
loads that module alone and registers it under its real name, which keeps a later ``import cel`` by
anyone else working (it finds ``cel.cel`` already loaded instead of initialising it twice). If the
layout of the distribution ever changes, the plain import is the fallback.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast


class CelProgram(Protocol):
    """The part of ``cel.Program`` that Flowcraft uses."""

    def execute(self, context: dict[str, object] | None = None) -> object:
        """Evaluate the program with the given variables."""

    def variables(self) -> list[str]:
        """Return the root identifiers the expression references."""


class CelEngine(Protocol):
    """The part of the ``cel`` extension module that Flowcraft uses."""

    def compile(self, expression: str) -> CelProgram:
        """Parse and compile an expression."""


@cache
def cel_engine() -> CelEngine:
    """Return the CEL extension module, loading it once."""
    module = sys.modules.get("cel.cel") or _load_extension_alone() or _import_package()
    return cast("CelEngine", module)


def _load_extension_alone() -> ModuleType | None:
    spec = importlib.util.find_spec("cel")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        return None
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = Path(next(iter(locations))) / f"cel{suffix}"
        if candidate.is_file():
            return _exec_extension(candidate)
    return None


def _exec_extension(path: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location("cel.cel", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cel.cel"] = module
    spec.loader.exec_module(module)
    return module


def _import_package() -> ModuleType:
    from cel import cel as extension  # noqa: PLC0415 - the slow path, only if the fast one fails

    return extension
