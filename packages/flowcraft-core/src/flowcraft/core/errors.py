"""Exceptions raised by flowcraft-core, split by what the caller can do about them.

Class tree::

    FlowcraftError                      root of every error this package raises on purpose
    ├── BlueprintError(ValueError)      a blueprint is invalid; ``.problems`` lists *every* problem,
    │                                   each with a stable code and a JSON path
    ├── ExpressionError(ValueError)     an expression does not compile, or failed to evaluate;
    │                                   ``.source`` is the expression, the message says why
    ├── NonRetryableError               raised by a node: fail the attempt without retrying
    ├── RunError                        about one run (``.run_id``)
    │   ├── RunNotFoundError(KeyError)  no such run (or token)
    │   └── ResumeError(ValueError)     resume of a node that is not awaiting (``.code``)
    ├── UnknownBlueprintError(KeyError) a blueprint id no runtime/worker knows
    ├── UnknownNodeError(KeyError)      a ``uses`` with no implementation in the registry
    └── BackendError                    a backend (broker, database, cache) failed an operation;
        │                               the driver's exception is chained as ``__cause__``
        ├── TransientBackendError       connection lost, timeout, failover, lock conflict:
        │                               retrying the same operation later may succeed
        └── PermanentBackendError       authentication, bad configuration, schema mismatch:
                                        retrying will not help until someone fixes it

API misuse (wrong argument types, unknown names passed in code) raises the matching built-in
(``TypeError``, ``ValueError``, ``KeyError``) rather than a Flowcraft error.

``Problem`` is not an exception: it is one finding of validation or lint, a frozen record of
``code`` (e.g. ``"FC102"``), ``path`` (e.g. ``"$.nodes[3].id"``), ``message`` and ``severity``.
The table of codes lives in ``flowcraft.core._model.problems`` and in the package README.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
"""How serious a problem is: errors make a blueprint invalid, the rest come from lint."""

__all__ = [
    "BackendError",
    "BlueprintError",
    "ExpressionError",
    "FlowcraftError",
    "NonRetryableError",
    "PermanentBackendError",
    "Problem",
    "ResumeError",
    "RunError",
    "RunNotFoundError",
    "Severity",
    "TransientBackendError",
    "UnknownBlueprintError",
    "UnknownNodeError",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One finding about a blueprint.

    Attributes:
        code: Stable identifier, e.g. ``"FC102"``; never reused for another meaning.
        name: Stable readable slug of the code, e.g. ``"duplicate-node-id"``.
        path: JSON path of the offending value, e.g. ``"$.nodes[3].config.retry.max_attempts"``.
        message: Human-readable explanation, naming the values involved.
        severity: ``"error"`` for validation problems; lint may report warnings and infos.
    """

    code: str
    name: str
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.code} {self.name}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """Return the problem as a JSON-ready mapping (the CLI's ``--json`` form)."""
        return {
            "code": self.code,
            "name": self.name,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class FlowcraftError(Exception):
    """Root of every exception Flowcraft raises on purpose."""


class BlueprintError(FlowcraftError, ValueError):
    """A blueprint is invalid.

    Attributes:
        problems: Every problem found, in document order; never empty.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._summary())

    def _summary(self) -> str:
        count = len(self.problems)
        lines = [f"invalid blueprint: {count} problem{'s' if count != 1 else ''}"]
        lines.extend(f"  {problem}" for problem in self.problems[:20])
        if count > 20:
            lines.append(f"  ... and {count - 20} more")
        return "\n".join(lines)


class ExpressionError(FlowcraftError, ValueError):
    """An expression failed to compile or to evaluate.

    Attributes:
        source: The expression's source text (truncated when very long).
        reason: Why it failed, without the source.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source if len(source) <= 200 else source[:200] + "..."
        self.reason = reason
        super().__init__(f"{reason} (in expression {self.source!r})")


class NonRetryableError(FlowcraftError):
    """Raise it (or a subclass) from a node to fail the attempt without further retries.

    The node's fallback, if any, still runs; the run fails otherwise.
    """


class RunError(FlowcraftError):
    """Base of errors about one run (``.run_id`` names it)."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class RunNotFoundError(RunError, KeyError):
    """No run with that id (or idempotency key) is known to this runtime or store."""

    def __str__(self) -> str:
        return str(self.args[0])


class ResumeError(RunError, ValueError):
    """A resume the run refuses.

    ``.code``: ``not-awaiting``, ``unknown-node`` or ``unknown-action``.
    """

    def __init__(self, run_id: str, code: str, message: str) -> None:
        self.code = code
        super().__init__(run_id, message)


class UnknownBlueprintError(FlowcraftError, KeyError):
    """A blueprint id (e.g. of a subflow) is not registered with the runtime."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownNodeError(FlowcraftError, KeyError):
    """A node's ``uses`` names no implementation in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


class BackendError(FlowcraftError):
    """A backend (broker, database, cache) failed an operation.

    Adapters raise it at their port edge in place of the driver's exception, which stays
    chained as ``__cause__`` with its message kept in this one.
    """


class TransientBackendError(BackendError):
    """The operation may succeed if retried later (connection lost, timeout, failover)."""


class PermanentBackendError(BackendError):
    """Retrying will not help (authentication, bad configuration, schema mismatch)."""
