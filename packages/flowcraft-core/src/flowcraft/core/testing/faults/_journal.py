"""The journal: what every process of a fault test noted, one JSON object a line in one file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The environment variable naming the journal file (the worker processes inherit it).
JOURNAL_ENV = "FLOWCRAFT_FAULT_JOURNAL"


def note(entry: Mapping[str, object]) -> None:
    """Append ``entry`` plus ``pid`` and ``at`` (epoch seconds) to the journal as one line.

    One ``write`` on a file opened with ``O_APPEND``: lines of concurrent processes never
    interleave. Raises ``KeyError`` when :data:`JOURNAL_ENV` is not set (a node run outside a
    fault test has nowhere to note).
    """
    line = json.dumps({**entry, "pid": os.getpid(), "at": time.time()}) + "\n"
    fd = os.open(os.environ[JOURNAL_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def parse_journal(text: str) -> list[dict[str, Any]]:
    """The entries of a journal's text, in the order written.

    Only whole lines count: a last line without its newline is a write still under way and is
    left for the next read. Blank lines are skipped; a line that is not a JSON object raises
    ``ValueError`` naming its line number (the journal is corrupt, not merely unfinished).
    """
    lines = text.split("\n")[:-1]  # the part after the last newline is unfinished
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if not isinstance(entry, dict):
            raise ValueError(f"journal line {number} is not a JSON object: {line[:80]!r}")
        entries.append(entry)
    return entries


@dataclass(frozen=True)
class Journal:
    """Read access to a journal file (which need not exist yet: then it is empty).

    ``fault.step`` notes ``{"run", "node", "ticket", "phase"}`` with phase ``started`` when an
    execution begins and ``finished`` when its body returns (so a ``started`` without its
    ``finished`` is an execution that died or was cancelled). Every read sees what all
    processes had written by then.
    """

    path: Path

    def entries(self) -> list[dict[str, Any]]:
        """Every entry so far, in the order written."""
        if not self.path.exists():
            return []
        return parse_journal(self.path.read_text())

    def steps(self, run_id: str, node: str, phase: str = "started") -> list[dict[str, Any]]:
        """The ``fault.step`` entries of one node of one run in ``phase``, oldest first."""
        wanted = {"run": run_id, "node": node, "phase": phase}
        return [e for e in self.entries() if all(e.get(k) == v for k, v in wanted.items())]

    def finished(self) -> int:
        """How many step executions finished so far (all runs)."""
        return sum(e.get("phase") == "finished" for e in self.entries())
