"""How much work one evaluation may take: a pessimistic estimate from shape and data size. Pure.

The estimate decides where an evaluation runs, never whether: one whose worst case fits the
budget runs inline (the fast path, no overhead beyond a bounded size count); any other runs in
an evaluator process that is killed when the budget is spent. So the estimate must never be
*below* the real cost of an inline evaluation, while being above it only costs a round trip.

Units are microseconds of CEL work on this machine class (measured with the ``cel`` extension
0.10: converting a scope value costs about 0.1 µs per int, 0.9 µs per short string and 4 µs per
two-entry map). A :func:`measure` unit is one value (a scalar, a container), two for a text,
plus one per KiB of text.

The worst cases it covers:

* **No comprehension**: every operator runs once; an intermediate value is at most the sum of the
  scope values it reads, so the work is at most ``n · (1 + refs · (1 + pluses))`` for ``n`` units
  of data, ``refs`` scope references and ``pluses`` ``+`` signs (string and list concatenation).
* **Comprehensions** (``all``, ``exists``, ``map`` ...): each nesting level iterates over at most
  every value, and a ``map`` whose body concatenates can multiply sizes at each chained step, so
  ranges grow by ``(1 + pluses) ** macros`` and nested levels multiply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Seconds one estimate unit stands for.
UNIT_SECONDS = 1e-6
#: Bytes of text counted as one unit.
_TEXT_UNIT = 1024
#: Estimates are capped here (floats never overflow into ``inf`` arithmetic surprises).
_CAP = 1e30


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """What the source says about the work: counted once, when the expression compiles.

    Attributes:
        macros: Comprehension macros in the source (chained or nested).
        macro_depth: Deepest nesting of comprehension macros.
        refs: Occurrences of scope names (``input`` ...), counted lexically.
        pluses: ``+`` signs, counted lexically (concatenations can grow values).
        literals: Elements of list and map literals.
    """

    macros: int
    macro_depth: int
    refs: int
    pluses: int
    literals: int


def estimate(shape: Shape, size: int) -> float:
    """Worst-case units of work for data of ``size`` units (see the module docstring)."""
    n = float(size + shape.literals + 1)
    per_value = 1.0 + shape.refs * (1.0 + shape.pluses)
    if shape.macros == 0:
        return min(n * per_value, _CAP)
    growth = min((1.0 + shape.pluses) ** min(shape.macros, 64), _CAP)
    reach = min(n * growth, _CAP)
    iterations = min(reach**shape.macro_depth, _CAP)
    return min(n + iterations * per_value * reach, _CAP)


def inline_limit(shape: Shape, budget: float) -> int:
    """The largest data size (units) whose estimate still fits ``budget`` seconds; -1 if none."""
    allowed = budget / UNIT_SECONDS
    if estimate(shape, 0) > allowed:
        return -1
    low, high = 0, int(allowed) + 1  # estimate(shape, size) >= size, so high never fits
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if estimate(shape, middle) <= allowed else (low, middle)
    return low


def measure(values: Iterable[object], limit: int) -> int:
    """Units of data in ``values``, counted up to just past ``limit`` (never a full walk of more).

    Every value is one unit; a text (or bytes) one more, plus one per KiB; a container's members
    count themselves (a map's keys one unit each). Members that are numbers, booleans or None
    are counted by the container's length without being visited, and a container too large
    for what is left of ``limit`` is counted by its length alone.
    """
    total = 0
    pending = list(values)
    while pending and total <= limit:
        value = pending.pop()
        total += 1 + _members(value, pending, limit - total)
    return total


def _members(value: object, pending: list[object], room: int) -> int:
    """Units of ``value`` beyond its own, queueing the members that need a visit."""
    if isinstance(value, str | bytes):
        return 1 + len(value) // _TEXT_UNIT
    if isinstance(value, Mapping):
        count = 2 * len(value)  # a key is one unit, whatever its length
        if count <= room:
            pending.extend(_visited(value.values()))
        return count
    if isinstance(value, list | tuple):
        if len(value) <= room:
            pending.extend(_visited(value))
        return len(value)
    return 0


def _visited(members: Iterable[object]) -> list[object]:
    return [member for member in members if type(member) not in _ATOMS]


_ATOMS = frozenset({int, float, bool, type(None)})
