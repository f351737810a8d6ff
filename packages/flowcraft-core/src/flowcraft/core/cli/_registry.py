"""Importing node implementations named on the command line (``MODULE:ATTR``)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Container, Mapping

from flowcraft.core.cli._common import UsageError


def _import(spec: str) -> object:
    """Import ``module:attribute`` (a ``Flow`` gives its registry).

    The current directory is importable (as for ``python -m``), so a registry module next to
    the blueprint works without installing it; every command imports registries this way.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--registry wants MODULE:ATTRIBUTE, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load registry {spec!r}: {exc}") from None
    return target.registry() if hasattr(target, "registry") else target


def import_registry(spec: str) -> Container[str]:
    """Import ``module:attribute`` as a registry of ``uses`` keys (``validate``, ``lint``).

    Raises:
        UsageError: The spec is malformed, the import fails, or the object is no registry.
    """
    registry = _import(spec)
    if not isinstance(registry, Container) or isinstance(registry, str):
        raise UsageError(f"registry {spec!r} is a {type(registry).__name__}, not a collection")
    return registry


def import_implementations(spec: str) -> Mapping[str, object]:
    """Import ``module:attribute``: a mapping of ``uses`` -> implementation, or a ``Flow``.

    Raises:
        UsageError: The spec is malformed, the import fails, or the object is no mapping.
    """
    registry = _import(spec)
    if not isinstance(registry, Mapping):
        kind = type(registry).__name__
        raise UsageError(f"registry {spec!r} is a {kind}, not a mapping of uses -> implementation")
    return registry
