"""The safe expression language: CEL, compiled once and evaluated many times.

Expressions appear in edge ``condition`` and ``transform``, loop ``while`` and map ``items``. They
are CEL (the Common Expression Language): no statements, no loops beyond bounded comprehensions, no
attribute walks into Python objects, no ``eval``. The scope is ``input``, ``result``, ``outputs``,
``context``, ``params`` and, in loops, ``iteration``. A name outside the scope is a compile error,
so typos fail when a blueprint loads, not when a run reaches the edge.

Errors are always :class:`~flowcraft.core.errors.ExpressionError`, never CEL internals, and an
evaluation error is never turned into a silent ``False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from flowcraft.core._expressions._cel import CelProgram, cel_engine
from flowcraft.core._expressions._convert import to_plain
from flowcraft.core._expressions._guard import check_source
from flowcraft.core._expressions._messages import describe_failure
from flowcraft.core.errors import ExpressionError

SCOPE_NAMES: frozenset[str] = frozenset(
    {"input", "result", "outputs", "context", "params", "iteration"}
)
"""Names an expression may reference; the caller supplies the ones it needs when evaluating."""

_CEL_NAMESPACES = frozenset({"optional"})

__all__ = ["SCOPE_NAMES", "CompiledExpression", "compile_expression"]


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A compiled expression; evaluate it as often as needed.

    Attributes:
        source: The expression's source text.
        names: The scope names the expression references, sorted.
    """

    source: str
    names: tuple[str, ...]
    _program: CelProgram = field(repr=False, compare=False)

    @property
    def is_constant(self) -> bool:
        """Whether the expression references no scope name (its value never changes)."""
        return not self.names

    def evaluate(self, scope: Mapping[str, object] | None = None) -> object:
        """Evaluate with the given scope and return a plain Python value.

        Args:
            scope: Values for the names the expression uses (``input``, ``context`` ...).

        Raises:
            ExpressionError: A name is missing, a key is absent, types do not match, or the
                result is not a plain value.
        """
        variables = dict(scope) if scope is not None else {}
        try:
            value = self._program.execute(variables)
        except BaseException as exc:  # the CEL extension may raise PanicException(BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise ExpressionError(self.source, describe_failure(exc)) from None
        return to_plain(self.source, value)


def compile_expression(source: str) -> CompiledExpression:
    """Compile an expression, or return the cached compilation of the same source.

    Args:
        source: CEL source, e.g. ``"input.total > 100 && context.tier == 'gold'"``.

    Raises:
        ExpressionError: The source is refused by the static limits, does not parse, or
            references a name outside the scope.
        TypeError: ``source`` is not a string.
    """
    if not isinstance(source, str):
        raise TypeError(f"an expression must be a str, not {type(source).__name__}")
    return _compile_cached(source)


@lru_cache(maxsize=65536)
def _compile_cached(source: str) -> CompiledExpression:
    refused, bound = check_source(source)
    if refused is not None:
        raise ExpressionError(source, refused)
    program = _parse(source)
    names = _scope_names(source, program, bound)
    return CompiledExpression(source=source, names=names, _program=program)


def _parse(source: str) -> CelProgram:
    try:
        return cel_engine().compile(source)
    except BaseException as exc:  # see CompiledExpression.evaluate
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise ExpressionError(source, describe_failure(exc)) from None


def _scope_names(source: str, program: CelProgram, bound: frozenset[str]) -> tuple[str, ...]:
    referenced = set(program.variables()) - bound - _CEL_NAMESPACES
    unknown = sorted(referenced - SCOPE_NAMES)
    if unknown:
        allowed = ", ".join(sorted(SCOPE_NAMES))
        raise ExpressionError(source, f"unknown name {unknown[0]!r}; the scope has {allowed}")
    return tuple(sorted(referenced))
