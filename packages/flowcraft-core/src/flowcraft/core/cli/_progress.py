"""Run progress on stderr: a live status line on a terminal, plain lines otherwise.

The live line moves while nodes run: elapsed time, done/total of the blueprint's top-level
nodes, the nodes running now and the last event, redrawn every :data:`TICK` seconds. Failures
and retries are printed on a line of their own with their reason, as they happen.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from flowcraft.core._engine.frames import ROOT
from flowcraft.core._runtime import events as fe

#: Seconds between redraws of the live line.
TICK = 0.25

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
_ENDED = (fe.NodeSucceeded, fe.NodeFailed, fe.NodeSkipped, fe.NodeCancelled)
#: Events after which an instance no longer runs.
_STOPPED = (*_ENDED, fe.NodeRetrying, fe.NodeAwaiting, fe.NodeSleeping)


class Progress:
    """Listens to lifecycle events and shows them (``total``: top-level nodes of the run)."""

    def __init__(self, *, live: bool, total: int = 0, stream: TextIO | None = None) -> None:
        self._live = live
        self._out = stream or sys.stderr
        self._began = time.monotonic()
        self._total = total
        self._done: set[str] = set()
        self._running: dict[tuple[str, str], None] = {}
        self._last = ""
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Redraw the live line on a clock from now on (call inside the running loop)."""
        if self._live and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            self._status()
            await asyncio.sleep(TICK)

    def on_event(self, event: fe.FlowEvent) -> None:
        """Show one event."""
        label = _LABELS.get(type(event), type(event).__name__)
        line = label
        if isinstance(event, fe.NodeEvent):
            line = self._node_event(event, label)
        if not self._live:
            print(f"{self._elapsed():8.3f}s {line}", file=self._out, flush=True)
            return
        if isinstance(event, fe.NodeFailed | fe.NodeRetrying):  # the reason, at once
            print(f"\r\x1b[2K{self._elapsed():6.1f}s {line}", file=self._out, flush=True)
        self._status()

    def _node_event(self, event: fe.NodeEvent, label: str) -> str:
        key = (event.node_id, event.frame)
        where = event.node_id if not event.frame else f"{event.node_id} [{event.frame}]"
        if isinstance(event, fe.NodeStarted):
            self._running[key] = None
        elif isinstance(event, _STOPPED):
            self._running.pop(key, None)
        if isinstance(event, _ENDED) and event.frame == ROOT:
            self._done.add(event.node_id)
        self._last = f"{where} {label}"
        line = f"{where} {label} (attempt {event.attempt})"
        if isinstance(event, fe.NodeFailed | fe.NodeRetrying) and event.error is not None:
            line += f": {event.error.type}: {event.error.message}"
        return line

    def _elapsed(self) -> float:
        return time.monotonic() - self._began

    def _status(self) -> None:
        done = f"{len(self._done)}/{self._total} done" if self._total else f"{len(self._done)} done"
        running = ", ".join(n if not f else f"{n} [{f}]" for n, f in list(self._running)[:4])
        more = len(self._running) - 4
        running += f" +{more}" if more > 0 else ""
        text = f"{self._elapsed():6.1f}s {done}"
        text += f" | running: {running}" if running else ""
        text += f" | {self._last}" if self._last else ""
        print(f"\r\x1b[2K{text}", end="", file=self._out, flush=True)

    def close(self) -> None:
        """Stop the clock and end the live line."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._live:
            self._status()
            print(file=self._out, flush=True)
