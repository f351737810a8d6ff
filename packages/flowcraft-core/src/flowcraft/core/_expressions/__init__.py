"""The safe expression language: CEL, compiled once and evaluated many times.

Expressions appear in edge ``condition`` and ``transform``, loop ``while`` and map ``items``. They
are CEL (the Common Expression Language): no statements, no loops beyond bounded comprehensions, no
attribute walks into Python objects, no ``eval``. The scope is ``input``, ``result``, ``outputs``,
``context``, ``params`` and, in loops, ``iteration``. A name outside the scope is a compile error,
so typos fail when a blueprint loads, not when a run reaches the edge.

Errors are always :class:`~flowcraft.core.errors.ExpressionError`, never CEL internals, and an
evaluation error is never turned into a silent ``False``.

**Bounded work.** The static limits (:mod:`._guard`) bound a source, not its work on data:
``input.l.all(x, input.l.all(y, x != -1))`` over 10,000 items runs for about 20 s. Measured with
the ``cel`` extension 0.10: ``Program.execute`` holds the GIL for the whole evaluation (a thread
running it stalled an event loop's 5 ms ticker for the full 0.9 s) and never checks for signals
(a ``SIGALRM`` handler ran only once the evaluation had returned), so an evaluation can neither
run beside the event loop in a thread nor be interrupted. ``map`` and ``filter`` are quadratic
in the list size (``l.map(x, x)``: 2 ms for 222 items, 100 ms for 2,000). Hence every
expression carries a budget (seconds, :data:`DEFAULT_BUDGET` unless the runtime sets
``expression_budget``) and each evaluation is routed by a pessimistic estimate
(:mod:`._cost`) from the source's shape, counted at compile time, and the size of the scope
values it references, counted at evaluation time up to a limit precomputed per shape:

* an estimate within the budget runs inline, as before (``input.total > 100``: ~1 µs more);
* any other runs in an evaluator process (:mod:`._isolated`) that is killed when the budget is
  spent: the evaluation fails with an ``ExpressionError`` naming the expression and the budget.
  It is not refused on the estimate alone, which is an upper bound (``exists`` may stop early).

The engine applies events synchronously, so an evaluation holds the event loop for at most its
budget: timeouts and cancellation are late by at most that much, which is why the default is
small.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from flowcraft.core._expressions._cel import CelProgram, cel_engine
from flowcraft.core._expressions._convert import to_plain
from flowcraft.core._expressions._cost import Shape, inline_limit, measure
from flowcraft.core._expressions._guard import check_source, scan
from flowcraft.core._expressions._isolated import IsolatedError, evaluate_isolated
from flowcraft.core._expressions._messages import describe_failure, describe_text
from flowcraft.core.errors import ExpressionError

SCOPE_NAMES: frozenset[str] = frozenset(
    {"input", "result", "outputs", "context", "params", "iteration"}
)
"""Names an expression may reference; the caller supplies the ones it needs when evaluating."""

DEFAULT_BUDGET = 0.1
"""Seconds of work one evaluation may take unless the runtime is given another budget."""

_CEL_NAMESPACES = frozenset({"optional"})
_SCOPE_REFERENCE = re.compile(r"\b(?:" + "|".join(sorted(SCOPE_NAMES)) + r")\b")

__all__ = [
    "DEFAULT_BUDGET",
    "SCOPE_NAMES",
    "CompiledExpression",
    "checked_budget",
    "compile_expression",
]


def checked_budget(budget: float) -> float:
    """``budget`` if it is a usable expression budget (seconds, > 0), else ``ValueError``."""
    if not (isinstance(budget, int | float) and budget > 0 and budget != float("inf")):
        raise ValueError(f"an expression budget must be a number of seconds > 0, got {budget!r}")
    return float(budget)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A compiled expression; evaluate it as often as needed.

    Attributes:
        source: The expression's source text.
        names: The scope names the expression references, sorted.
        budget: Seconds of work one evaluation may take (see :meth:`with_budget`).
    """

    source: str
    names: tuple[str, ...]
    budget: float = DEFAULT_BUDGET
    _program: CelProgram = field(repr=False, compare=False, kw_only=True)
    _shape: Shape = field(repr=False, compare=False, kw_only=True)
    _inline: int = field(repr=False, compare=False, kw_only=True)

    @property
    def is_constant(self) -> bool:
        """Whether the expression references no scope name (its value never changes)."""
        return not self.names

    def with_budget(self, budget: float) -> CompiledExpression:
        """The same expression with another evaluation budget (seconds, > 0)."""
        budget = checked_budget(budget)
        if budget == self.budget:
            return self
        return replace(self, budget=budget, _inline=inline_limit(self._shape, budget))

    def evaluate(self, scope: Mapping[str, object] | None = None) -> object:
        """Evaluate with the given scope and return a plain Python value.

        Evaluations whose worst case fits the budget run here; the others run in an evaluator
        process that is stopped once the budget is spent.

        Args:
            scope: Values for the names the expression uses (``input``, ``context`` ...).

        Raises:
            ExpressionError: A name is missing, a key is absent, types do not match, the
                result is not a plain value, or the evaluation did not finish within its budget.
        """
        variables = {name: scope[name] for name in self.names if name in scope} if scope else {}
        if measure(variables.values(), self._inline) <= self._inline:
            return to_plain(self.source, self._run_inline(variables))
        return to_plain(self.source, self._run_isolated(variables))

    def _run_inline(self, variables: dict[str, object]) -> object:
        try:
            return self._program.execute(variables)
        except BaseException as exc:  # the CEL extension may raise PanicException(BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise ExpressionError(self.source, describe_failure(exc)) from None

    def _run_isolated(self, variables: dict[str, object]) -> object:
        try:
            answer = evaluate_isolated(self.source, variables, self.budget)
        except IsolatedError as exc:
            raise ExpressionError(self.source, self._failure_reason(exc)) from None
        if answer.error is not None:
            raise ExpressionError(self.source, describe_text(*answer.error))
        return answer.value

    def _failure_reason(self, failure: IsolatedError) -> str:
        if failure.overrun:
            return (
                f"the evaluation did not finish within its budget of {self.budget:g} s "
                "(a bigger input or a cheaper expression? the runtime's expression_budget "
                "sets the budget)"
            )
        return f"the evaluation was stopped: {failure} (out of memory?)"


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
    shape = _shape_of(source)
    return CompiledExpression(
        source=source,
        names=names,
        _program=program,
        _shape=shape,
        _inline=inline_limit(shape, DEFAULT_BUDGET),
    )


def _shape_of(source: str) -> Shape:
    measured = scan(source)
    return Shape(
        macros=measured.macros,
        macro_depth=measured.macro_depth,
        refs=len(_SCOPE_REFERENCE.findall(source)),
        pluses=source.count("+"),
        literals=measured.elements,
    )


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
