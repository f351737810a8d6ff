"""The TypeScript Flowcraft dialect: camelCase blueprints loaded unchanged, meaning the same.

=====================  ==========================================================
TypeScript             canonical (Python)
=====================  ==========================================================
``config.maxRetries``  ``config.retry.max_attempts`` (total attempts, as in TS)
``config.retryDelay``  ``config.retry.delay`` (milliseconds → seconds; default 1 s;
                       TS retries at a fixed delay, so ``backoff`` becomes 1)
``config.timeout``     ``config.timeout`` (milliseconds → seconds)
``config.joinStrategy````config.join``
``config.fallback``    ``config.fallback``
``uses: wait``         ``uses: flowcraft.wait``
``uses: sleep``        ``uses: flowcraft.sleep``, ``params.duration`` (ms or ``"5s"``,
                       ``"1m"``, ``"2h"``, ``"1d"``) → ``params.seconds``
``uses: subflow``      ``uses: flowcraft.subflow``, ``params.blueprintId/inputs/outputs``
                       → ``params.blueprint/input/output``
=====================  ==========================================================

``loop-controller`` loops and ``batch-scatter``/``batch-gather`` are rejected by validation with
a message pointing to ``flowcraft.loop`` and ``flowcraft.map``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowcraft.core._model import problems as codes
from flowcraft.core._model.kinds import SLEEP, SUBFLOW, WAIT
from flowcraft.core._model.paths import join
from flowcraft.core.errors import Problem

Dialect = Literal["auto", "python", "typescript"]
"""How camelCase and millisecond fields are read; ``auto`` detects TypeScript blueprints."""

TS_ONLY_USES = frozenset({"loop-controller", "batch-scatter", "batch-gather"})
_TS_CONFIG_KEYS = frozenset({"maxRetries", "retryDelay", "joinStrategy"})
_TS_DEFAULT_DELAY_S = 1.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 0.001}


@dataclass
class Normalised:
    """A document in canonical form, plus what the conversion found.

    Attributes:
        document: The canonical document (the input is never modified).
        dialect: The dialect the document was read in.
        problems: Conflicts between camelCase and snake_case spellings.
        origins: Canonical path → path the user wrote, for renamed fields.
    """

    document: Mapping[str, Any]
    dialect: Literal["python", "typescript"]
    problems: list[Problem] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)


def normalise(document: Mapping[str, Any], dialect: Dialect = "auto") -> Normalised:
    """Return the canonical form of a blueprint document in ``dialect``."""
    chosen = detect_dialect(document) if dialect == "auto" else dialect
    result = Normalised(document=document, dialect=chosen)
    nodes = document.get("nodes")
    if chosen == "typescript" and isinstance(nodes, list):
        converted = [_node(node, join("$", "nodes", i), result) for i, node in enumerate(nodes)]
        result.document = {**document, "nodes": converted}
    return result


def detect_dialect(document: Mapping[str, Any]) -> Literal["python", "typescript"]:
    """Return ``typescript`` when the document shows any TypeScript-only spelling."""
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping) and "cycleEntryPoints" in metadata:
        return "typescript"
    nodes = document.get("nodes")
    if isinstance(nodes, list) and any(_looks_ts(node) for node in nodes):
        return "typescript"
    return "python"


def _looks_ts(node: object) -> bool:
    if not isinstance(node, Mapping):
        return False
    config = node.get("config")
    params = node.get("params")
    uses = node.get("uses")
    return (
        (isinstance(config, Mapping) and not _TS_CONFIG_KEYS.isdisjoint(config))
        or uses in TS_ONLY_USES
        or (uses == "subflow" and isinstance(params, Mapping) and "blueprintId" in params)
        or (uses == "sleep" and isinstance(params, Mapping) and "duration" in params)
    )


def _node(node: object, path: str, result: Normalised) -> object:
    if not isinstance(node, Mapping):
        return node
    converted = dict(node)
    if isinstance(node.get("config"), Mapping):
        converted["config"] = _config(node["config"], join(path, "config"), result)
    _builtin(converted, path, result)
    return converted


def _config(config: Mapping[str, Any], path: str, result: Normalised) -> dict[str, Any]:
    converted = {k: v for k, v in config.items() if k not in _TS_CONFIG_KEYS}
    if "timeout" in config:
        converted["timeout"] = _ms_to_s(config["timeout"])
    if "joinStrategy" in config:
        _rename(
            converted,
            "join",
            config["joinStrategy"],
            path=path,
            ts_key="joinStrategy",
            result=result,
        )
    if "maxRetries" in config or "retryDelay" in config:
        _rename(
            converted, "retry", _retry(config), path=path, ts_key=_retry_key(config), result=result
        )
        _origin(result, join(path, "retry", "max_attempts"), join(path, "maxRetries"))
        _origin(result, join(path, "retry", "delay"), join(path, "retryDelay"))
    return converted


def _retry(config: Mapping[str, Any]) -> dict[str, Any]:
    retry: dict[str, Any] = {"backoff": 1.0, "delay": _TS_DEFAULT_DELAY_S}
    if "maxRetries" in config:
        retry["max_attempts"] = config["maxRetries"]
    if "retryDelay" in config:
        retry["delay"] = _ms_to_s(config["retryDelay"])
    return retry


def _retry_key(config: Mapping[str, Any]) -> str:
    return "maxRetries" if "maxRetries" in config else "retryDelay"


def _rename(
    target: dict[str, Any], key: str, value: object, *, path: str, ts_key: str, result: Normalised
) -> None:
    if key in target:
        message = f"both `{ts_key}` (TypeScript) and `{key}` are given; keep one"
        result.problems.append(codes.ALIAS_CONFLICT.problem(join(path, ts_key), message))
        return
    target[key] = value
    _origin(result, join(path, key), join(path, ts_key))


def _origin(result: Normalised, canonical: str, original: str) -> None:
    result.origins[canonical] = original


def _ms_to_s(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    return value


def _builtin(node: dict[str, Any], path: str, result: Normalised) -> None:
    uses = node.get("uses")
    params = node.get("params")
    params = dict(params) if isinstance(params, Mapping) else params
    if uses == "wait":
        node["uses"] = WAIT
    elif uses == "sleep":
        node["uses"] = SLEEP
        if isinstance(params, dict) and "duration" in params:
            params["seconds"] = _duration(params.pop("duration"))
            _origin(result, join(path, "params", "seconds"), join(path, "params", "duration"))
    elif uses == "subflow":
        node["uses"] = SUBFLOW
        if isinstance(params, dict):
            _subflow_params(params, join(path, "params"), result)
    if "params" in node:
        node["params"] = params


def _subflow_params(params: dict[str, Any], path: str, result: Normalised) -> None:
    for ts_key, key in (("blueprintId", "blueprint"), ("inputs", "input"), ("outputs", "output")):
        if ts_key in params:
            _rename(params, key, params.pop(ts_key), path=path, ts_key=ts_key, result=result)


def _duration(value: object) -> object:
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return _ms_to_s(value)
