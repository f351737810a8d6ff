"""The evaluator process: a bare interpreter that evaluates CEL requests read from stdin.

Started by :mod:`flowcraft.core._expressions._isolated` as ``python -I _sandbox.py EXTENSION
MEMORY``: it imports nothing of Flowcraft (so it starts in tens of milliseconds), loads the CEL
extension from the path it is given, caps its address space at ``MEMORY`` bytes, announces itself
with an empty frame and then answers framed requests (an 8-byte big-endian length, then a
pickle) until stdin closes: ``(source, variables)`` in, ``("ok", value)`` or ``("error", kind,
message)`` out. It is a child of the process that talks to it, which kills it when an evaluation
overruns its budget.

CEL ``optional`` values have no pickled form; they travel as their value (or ``None``), which
is what the caller's conversion to plain values makes of them anyway.
"""

from __future__ import annotations

import importlib.util
import pickle
import resource
import struct
import sys
from types import ModuleType
from typing import Any, BinaryIO

_HEADER = struct.Struct(">Q")


def main() -> None:
    """Serve requests until stdin closes."""
    extension, memory = sys.argv[1], int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    engine = _load(extension)
    _write(sys.stdout.buffer, b"")  # ready: the caller's budget starts with its first request
    programs: dict[str, Any] = {}
    while (request := _read(sys.stdin.buffer)) is not None:
        _write(sys.stdout.buffer, _answer(engine, programs, request))


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("cel.cel", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cel.cel"] = module
    spec.loader.exec_module(module)
    return module


def _answer(engine: ModuleType, programs: dict[str, Any], request: bytes) -> bytes:
    try:
        source, variables = pickle.loads(request)  # noqa: S301 - our own parent's request
        program = programs.get(source) or engine.compile(source)
        programs[source] = program
        reply: tuple[object, ...] = ("ok", _unwrap(program.execute(variables)))
        return pickle.dumps(reply)
    except BaseException as exc:  # the CEL extension raises BaseException too
        return pickle.dumps(("error", type(exc).__name__, str(exc)))


def _unwrap(value: object) -> object:
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    if isinstance(value, dict):
        return {key: _unwrap(item) for key, item in value.items()}
    if type(value).__name__ == "OptionalValue":
        return _unwrap(value.value()) if value.has_value() else None  # type: ignore[attr-defined]
    return value


def _read(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    return stream.read(length)


def _write(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


if __name__ == "__main__":
    main()
