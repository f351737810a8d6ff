"""Node behaviours of SEMANTICS-EXAMPLES.md for the simulator, and an expression test double."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flowcraft.core._engine.simulator import Call, Impl, Outcome


@dataclass(frozen=True, slots=True)
class PyExpression:
    """A compiled-expression test double backed by a Python function (unit tests only).

    Real blueprints compile their expressions with the safe expression language; this stands in
    where a test of the decision core wants a condition without parsing one.
    """

    source: str
    fn: Callable[[Mapping[str, object]], object]

    def evaluate(self, scope: Mapping[str, object]) -> object:
        """Call the function with the scope."""
        return self.fn(scope)


class Behaviours:
    """``const``, ``echo``, ``act``, ``fail`` and ``count`` of the worked examples, with a log."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def const(self, value: object) -> Impl:
        """Always return ``value``."""
        return lambda call: value

    def echo(self, call: Call) -> object:
        """Return the input."""
        return call.input

    def act(self, action: str) -> Impl:
        """Return output None with ``action``."""
        return lambda call: Outcome(output=None, action=action)

    def fail(self, n: int) -> Impl:
        """Raise ``RuntimeError("boom")`` on the first ``n`` attempts, then return ``"ok"``."""

        def run(call: Call) -> object:
            if call.attempt <= n:
                raise RuntimeError("boom")
            return "ok"

        return run

    def count(self, call: Call) -> object:
        """Append the node id to the log; return it."""
        self.log.append(call.node_id)
        return call.node_id
