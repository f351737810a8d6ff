"""Reserved ``uses`` names of the built-in node kinds (always known to validation)."""

from __future__ import annotations

from typing import Final

RESERVED_PREFIX: Final = "flowcraft."
WAIT: Final = "flowcraft.wait"
SLEEP: Final = "flowcraft.sleep"
SUBFLOW: Final = "flowcraft.subflow"
MAP: Final = "flowcraft.map"
LOOP: Final = "flowcraft.loop"

BUILTIN_KINDS: Final = frozenset({WAIT, SLEEP, SUBFLOW, MAP, LOOP})
"""Every built-in ``uses`` name."""
