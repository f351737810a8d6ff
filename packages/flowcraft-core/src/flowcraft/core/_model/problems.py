"""The table of problem codes: the one place where codes, names and severities are defined.

Codes are stable: a code is never reused for another meaning. ``FC0xx`` are document problems,
``FC1xx`` node problems, ``FC2xx`` edge problems, ``FC3xx`` expression problems, ``FC4xx`` graph
shape problems (all errors); ``FC5xx`` are lint findings (warnings and infos).
"""

from __future__ import annotations

from dataclasses import dataclass

from flowcraft.core.errors import Problem, Severity


@dataclass(frozen=True, slots=True)
class Code:
    """One entry of the code table."""

    code: str
    name: str
    severity: Severity
    summary: str

    def problem(self, path: str, message: str) -> Problem:
        """Build a problem of this code at ``path``."""
        return Problem(
            code=self.code, name=self.name, path=path, message=message, severity=self.severity
        )


def _c(code: str, name: str, summary: str, severity: Severity = "error") -> Code:
    return Code(code, name, severity, summary)


UNREADABLE = _c("FC001", "unreadable-document", "the file is missing or not JSON/YAML")
TOO_LARGE = _c("FC002", "document-too-large", "the document exceeds a configured size limit")
MISSING_FIELD = _c("FC003", "missing-field", "a required field is absent")
UNKNOWN_FIELD = _c("FC004", "unknown-field", "a field that the format does not define")
INVALID_VALUE = _c("FC005", "invalid-value", "a value has the wrong type or is out of range")
ALIAS_CONFLICT = _c("FC006", "alias-conflict", "a field is given both in snake_case and camelCase")
TOO_DEEP = _c("FC007", "nesting-too-deep", "inline bodies are nested deeper than the limit")

EMPTY_NODE_ID = _c("FC101", "empty-node-id", "a node id is empty or blank")
DUPLICATE_NODE_ID = _c("FC102", "duplicate-node-id", "two nodes of one graph share an id")
UNKNOWN_USES = _c("FC103", "unknown-uses", "`uses` is not in the registry given")
UNKNOWN_BUILTIN = _c("FC104", "unknown-builtin", "`uses` is in the reserved `flowcraft.` space")
FALLBACK_UNKNOWN = _c("FC105", "fallback-unknown-node", "`config.fallback` names no node")
FALLBACK_SELF = _c("FC106", "fallback-self", "a node is its own fallback")
LOOP_NO_MAX = _c("FC107", "loop-without-max-iterations", "a loop lacks `max_iterations`")
BAD_CONSTRUCT = _c("FC108", "invalid-construct", "a built-in node's params are inconsistent")
TS_UNSUPPORTED = _c("FC109", "unsupported-ts-construct", "a TypeScript built-in with no equivalent")

EDGE_UNKNOWN_SOURCE = _c("FC201", "edge-unknown-source", "an edge's source names no node")
EDGE_UNKNOWN_TARGET = _c("FC202", "edge-unknown-target", "an edge's target names no node")
DUPLICATE_EDGE = _c("FC203", "duplicate-edge", "two edges share source, target and action")

BAD_EXPRESSION = _c("FC301", "invalid-expression", "an expression does not compile")

CYCLE = _c("FC401", "cycle", "the graph has a cycle; loops must use `flowcraft.loop`")
TS_LOOP = _c("FC402", "ts-loop", "a TypeScript-style loop (loop-controller / back edges)")

ORPHAN = _c("FC501", "orphan-node", "a node with no edges in a multi-node graph", "warning")
UNREACHABLE = _c("FC502", "unreachable-node", "no start node leads to this node", "warning")
FALLBACK_WITH_EDGES = _c(
    "FC503", "fallback-has-incoming-edges", "a fallback handler also runs as a node", "warning"
)
CONSTANT_CONDITION = _c(
    "FC504", "constant-condition", "an edge condition is always true or false", "warning"
)
JOIN_NO_EFFECT = _c("FC505", "join-without-effect", "`join: any` on <2 incoming edges", "info")
MANY_TERMINALS = _c(
    "FC506", "multiple-terminal-nodes", "the run output is a mapping of terminal outputs", "info"
)

ALL_CODES: tuple[Code, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, Code))
"""Every code, in code order (documentation and tests read this)."""
