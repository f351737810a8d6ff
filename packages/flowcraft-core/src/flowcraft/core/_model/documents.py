"""Reading blueprint documents from JSON or YAML text and files (no code execution)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from flowcraft.core._model import problems as codes
from flowcraft.core._model.limits import Limits
from flowcraft.core.errors import BlueprintError

Format = Literal["auto", "json", "yaml"]
"""The text format; ``auto`` picks by file suffix, else tries JSON then YAML."""


class _SafeLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (no "billion laughs") and without timestamps."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: ANN401 - PyYAML's signature
        """A mapping whose keys are unique (a repeated key is an error, never "last wins")."""
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the mapping constructor reports it
            if first is not None:
                message = f"duplicate key {key!r} (first at line {first + 1})"
                raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_file(path: str | Path, limits: Limits, fmt: Format = "auto") -> object:
    """Read and parse a blueprint file.

    Raises:
        BlueprintError: The file is missing, too large, or not JSON/YAML (FC001/FC002).
    """
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > limits.max_bytes:
            raise _too_large(size, limits)
        raw = file.read_bytes()
    except OSError as exc:
        raise _unreadable(f"cannot read {str(file)!r}: {exc.strerror or exc}") from None
    chosen = fmt if fmt != "auto" else _format_of(file)
    return parse_text(raw, limits, chosen)


def parse_text(text: str | bytes, limits: Limits, fmt: Format = "auto") -> object:
    """Parse JSON or YAML text into plain data.

    Raises:
        BlueprintError: The text is too large or not JSON/YAML (FC001/FC002).
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > limits.max_bytes:
        raise _too_large(size, limits)
    decoded = _decode(text)
    if fmt == "json":
        return _json(decoded)
    if fmt == "yaml":
        return _yaml(decoded)
    try:
        return _json(decoded)
    except BlueprintError:
        return _yaml(decoded)


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unreadable(f"the document is not UTF-8 text ({exc.reason})") from None


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose keys are unique (a repeated key is an error, never "last wins")."""
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKeyError(key)
        found[key] = value
    return found


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except _DuplicateKeyError as exc:
        raise _unreadable(f"not valid JSON: duplicate key {exc.key!r}") from None
    except json.JSONDecodeError as exc:
        raise _unreadable(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise _unreadable("the JSON document is nested too deeply") from None


def _yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise _unreadable(f"not valid JSON or YAML: {exc.problem}{where}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise _unreadable(f"not valid JSON or YAML: {type(exc).__name__}") from None


def _format_of(file: Path) -> Format:
    suffix = file.suffix.lower()
    return "json" if suffix == ".json" else "yaml" if suffix in {".yaml", ".yml"} else "auto"


def _unreadable(message: str) -> BlueprintError:
    return BlueprintError([codes.UNREADABLE.problem("$", message)])


def _too_large(size: int, limits: Limits) -> BlueprintError:
    message = f"the document has {size} bytes; the limit is {limits.max_bytes}"
    return BlueprintError([codes.TOO_LARGE.problem("$", message)])
