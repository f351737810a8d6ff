"""Static limits checked before an expression reaches the CEL parser.

CEL cannot loop forever, but nested comprehensions over literal lists can still take minutes
(the cost multiplies with every level), and a huge or deeply nested source wastes parser time. These
checks are a cheap lexical scan that turns such input into a clear error before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LENGTH = 4_000
"""Longest expression source accepted, in characters."""
MAX_DEPTH = 64
"""Deepest nesting of brackets, braces and parentheses."""
MAX_MACRO_DEPTH = 2
"""Deepest nesting of comprehension macros (``all``, ``exists``, ``map`` ...)."""
MAX_LITERAL_ELEMENTS = 512
"""Most elements of list and map literals in one expression."""
MAX_LITERAL_ELEMENTS_WITH_MACROS = 64
"""Most literal elements in an expression that also uses comprehension macros."""

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_QUOTES = "\"'"


@dataclass
class _Frame:
    opener: str
    macro: bool
    literal: bool


@dataclass
class _Scan:
    depth: int = 0
    macro_depth: int = 0
    macros: int = 0
    elements: int = 0
    bound: set[str] = field(default_factory=set)
    stack: list[_Frame] = field(default_factory=list)


def check_source(source: str) -> tuple[str | None, frozenset[str]]:
    """Check ``source`` against the limits.

    Returns:
        Why the source is refused (``None`` when it may be compiled), and the variable names
        that its comprehension macros bind.
    """
    if not source.strip():
        return "the expression is empty", frozenset()
    if len(source) > MAX_LENGTH:
        return (
            f"the expression is {len(source)} characters long; the limit is {MAX_LENGTH}",
            frozenset(),
        )
    if not any(opener in source for opener in "([{"):
        return None, frozenset()  # no nesting, no macros, no literals: nothing to measure
    result = scan(source)
    return _limits_message(result), frozenset(result.bound)


def _limits_message(result: _Scan) -> str | None:
    if result.depth > MAX_DEPTH:
        return f"brackets are nested {result.depth} deep; the limit is {MAX_DEPTH}"
    if result.macro_depth > MAX_MACRO_DEPTH:
        return (
            f"comprehensions are nested {result.macro_depth} deep; the limit is {MAX_MACRO_DEPTH}"
        )
    limit = MAX_LITERAL_ELEMENTS_WITH_MACROS if result.macros else MAX_LITERAL_ELEMENTS
    if result.elements > limit:
        return f"list and map literals hold {result.elements} elements; the limit is {limit}"
    return None


def scan(source: str) -> _Scan:
    """Scan ``source`` once, measuring nesting, macros and literal sizes."""
    state = _Scan()
    index = 0
    while index < len(source):
        char = source[index]
        if char in _QUOTES:
            index = _skip_string(source, index)
            continue
        _scan_char(source, index, state)
        index += 1
    return state


def _scan_char(source: str, index: int, state: _Scan) -> None:
    char = source[index]
    if char in "([{":
        _open(source, index, state)
    elif char in _CLOSERS:
        if state.stack and state.stack[-1].opener == _CLOSERS[char]:
            state.stack.pop()
    elif char == "," and state.stack and state.stack[-1].literal:
        state.elements += 1


def _open(source: str, index: int, state: _Scan) -> None:
    char = source[index]
    before = source[:index].rstrip()
    name = _trailing_identifier(before)
    macro = char == "(" and name in MACROS and before[: len(before) - len(name)].endswith(".")
    literal = char == "{" or (char == "[" and not _ends_operand(before))
    if literal and source[index + 1 :].lstrip()[:1] not in ("]", "}"):
        state.elements += 1
    if macro:
        state.macros += 1
        argument = source[index + 1 :].split(",", 1)[0].strip()
        if argument.isidentifier():
            state.bound.add(argument)
    state.stack.append(_Frame(char, macro, literal))
    state.depth = max(state.depth, len(state.stack))
    state.macro_depth = max(state.macro_depth, sum(frame.macro for frame in state.stack))


def _ends_operand(text: str) -> bool:
    return bool(text) and (text[-1].isalnum() or text[-1] in "_)]}\"'")


def _trailing_identifier(text: str) -> str:
    end = len(text)
    start = end
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:end]


def _skip_string(source: str, index: int) -> int:
    quote = source[index]
    triple = source[index : index + 3] == quote * 3
    delimiter = quote * 3 if triple else quote
    position = index + len(delimiter)
    while position < len(source):
        if source[position] == "\\":
            position += 2
            continue
        if source.startswith(delimiter, position):
            return position + len(delimiter)
        position += 1
    return position
