"""Serializers: what node outputs and context values must survive to cross a process boundary.

The in-memory runtime round-trips every output and context write through the serializer, so a
blueprint behaves the same in memory as on a distributed backend (a tuple comes back as a list,
an unserialisable object fails the node with a clear error naming it).
"""

from __future__ import annotations

import json
from typing import Protocol


class Serializer(Protocol):
    """Turns values into bytes and back. ``loads(dumps(v))`` is the value other processes see."""

    def dumps(self, value: object) -> bytes:
        """Encode; raises ``TypeError``/``ValueError`` for values it cannot encode."""
        ...

    def loads(self, data: bytes) -> object:
        """Decode what :meth:`dumps` produced."""
        ...


class JsonSerializer:
    """JSON (UTF-8), the default: NaN and infinities are refused, keys must be strings."""

    def dumps(self, value: object) -> bytes:
        """Encode as compact JSON."""
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> object:
        """Decode JSON."""
        return json.loads(data)
