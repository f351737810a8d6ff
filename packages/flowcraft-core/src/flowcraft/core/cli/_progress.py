"""Run progress on stderr: a live status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

from flowcraft.core._runtime import events as fe

_LABELS: dict[type[fe.FlowEvent], str] = {
    fe.NodeStarted: "started",
    fe.NodeSucceeded: "succeeded",
    fe.NodeFailed: "FAILED",
    fe.NodeRetrying: "retrying",
    fe.NodeSkipped: "skipped",
    fe.NodeAwaiting: "awaiting",
    fe.NodeResumed: "resumed",
    fe.NodeSleeping: "sleeping",
    fe.NodeCancelled: "cancelled",
    fe.RunStarted: "run started",
    fe.RunAwaiting: "run awaiting",
    fe.RunResumed: "run resumed",
    fe.RunCompleted: "run completed",
    fe.RunFailed: "run FAILED",
    fe.RunCancelled: "run cancelled",
}


class Progress:
    """Listens to lifecycle events and shows them."""

    def __init__(self, *, live: bool, stream: TextIO | None = None) -> None:
        self._live = live
        self._out = stream or sys.stderr
        self._began = time.monotonic()
        self._counts: Counter[str] = Counter()
        self._last = ""

    def on_event(self, event: fe.FlowEvent) -> None:
        """Show one event."""
        label = _LABELS.get(type(event), type(event).__name__)
        if isinstance(event, fe.NodeEvent):
            self._counts[label] += 1
            where = event.node_id if not event.frame else f"{event.node_id} [{event.frame}]"
            self._last = f"{where} {label}"
            line = f"{where} {label} (attempt {event.attempt})"
            if isinstance(event, fe.NodeFailed | fe.NodeRetrying) and event.error is not None:
                line += f": {event.error.type}: {event.error.message}"
        else:
            line = label
        if self._live:
            self._status()
        else:
            print(f"{time.monotonic() - self._began:8.3f}s {line}", file=self._out, flush=True)

    def _status(self) -> None:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        elapsed = time.monotonic() - self._began
        print(
            f"\r\x1b[2K{elapsed:6.1f}s {counts} | {self._last}", end="", file=self._out, flush=True
        )

    def close(self) -> None:
        """End the live line."""
        if self._live:
            print(file=self._out, flush=True)
