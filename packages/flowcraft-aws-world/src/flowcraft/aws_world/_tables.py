"""Keys and item shapes shared by the write path and the reads (see ``_schema``)."""

from __future__ import annotations

import threading
import time
from typing import Any

#: The one value of the runs' ``shard`` attribute (the partition of the by-created index).
RUNS_SHARD = "runs"


def s(value: str) -> dict[str, str]:
    """A string attribute value."""
    return {"S": value}


def n(value: int) -> dict[str, str]:
    """A number attribute value."""
    return {"N": str(value)}


def step_key(run_id: str, step_id: str) -> dict[str, Any]:
    """The steps-table key of a step."""
    return {"run_id": s(run_id), "sk": s("s#" + step_id)}


def wait_key(run_id: str, wait_id: str) -> dict[str, Any]:
    """The steps-table key of a wait."""
    return {"run_id": s(run_id), "sk": s("w#" + wait_id)}


def resume_key(run_id: str, resume_id: str) -> dict[str, Any]:
    """The steps-table key of a resume-id marker."""
    return {"run_id": s(run_id), "sk": s("r#" + resume_id)}


def attr_key(run_id: str, correlation_id: str) -> dict[str, Any]:
    """The steps-table key of an ``attr_set`` marker."""
    return {"run_id": s(run_id), "sk": s("a#" + correlation_id)}


def hook_key(run_id: str, hook_id: str) -> dict[str, Any]:
    """The hooks-table key of a hook."""
    return {"pk": s("r#" + run_id), "sk": s(hook_id)}


def token_key(token: str) -> dict[str, Any]:
    """The hooks-table key of a token claim."""
    return {"pk": s("t#" + token), "sk": s("#")}


def event_key(run_id: str, sequence: int) -> dict[str, Any]:
    """The events-table key of an event."""
    return {"run_id": s(run_id), "seq": n(sequence)}


class Clock:
    """Strictly increasing nanosecond stamps (creation and update order of runs)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        """A stamp greater than every earlier one of this process."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last
