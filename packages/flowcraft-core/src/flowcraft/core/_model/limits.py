"""Size limits of blueprint documents (configurable; the defaults are generous)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Limits checked when a blueprint is loaded.

    Attributes:
        max_bytes: Largest file or text accepted, in bytes.
        max_nodes: Most nodes in one document, inline bodies included.
        max_edges: Most edges in one document, inline bodies included.
        max_depth: Deepest nesting of inline bodies (a loop in a map in a loop ...).
    """

    max_bytes: int = 32 * 1024 * 1024
    max_nodes: int = 200_000
    max_edges: int = 400_000
    max_depth: int = 16


DEFAULT_LIMITS = Limits()
