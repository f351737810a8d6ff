"""Stopping ``flowcraft run`` early: Ctrl-C and ``--timeout``, without waiting on stuck nodes.

The first SIGINT says so on stderr and cancels the run (coroutine nodes are cancelled, nodes in
threads see their cancellation flag); the result is printed after at most :data:`GRACE`
seconds and the command exits 130. A second SIGINT exits at once (no traceback). ``--timeout``
does the same on time, with the reason in the result's ``errors``. Threads of nodes that do
not stop are not waited for when the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from flowcraft.core._runtime.result import RunResult
from flowcraft.core._runtime.runtime import RunHandle

#: Seconds a cancelled run gets to settle before its result is printed as it stands.
GRACE = 1.0
#: The exit code of a run stopped by Ctrl-C (the shell's 128 + SIGINT).
INTERRUPTED = 130


class Stop:
    """Why a run was stopped early (``reason`` None: it was not)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.interrupted = False
        self._event = asyncio.Event()

    def install(self) -> None:
        """Handle SIGINT in the running loop (first: cancel; second: quit at once)."""
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._sigint)

    def _sigint(self) -> None:
        if self.interrupted:
            print("flowcraft: interrupted again: quitting", file=sys.stderr, flush=True)
            os._exit(INTERRUPTED)
        self.interrupted = True
        self.reason = "interrupted (Ctrl-C): the run was cancelled"
        print(
            "flowcraft: interrupted: cancelling the run (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )
        self._event.set()

    async def run(
        self, work: Coroutine[Any, Any, RunResult], handle: RunHandle, timeout: float | None
    ) -> RunResult:
        """``work``'s result, or the run's once cancelled by Ctrl-C or after ``timeout``."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._event.wait())
        first = asyncio.FIRST_COMPLETED
        done, _ = await asyncio.wait({task, stopped}, timeout=timeout, return_when=first)
        stopped.cancel()
        if task in done:
            return task.result()
        task.cancel()
        if self.reason is None:
            self.reason = f"timed out after {timeout:g} s (--timeout): the run was cancelled"
        await handle.cancel()
        try:
            return await handle.result(timeout=GRACE)
        except TimeoutError:  # a node that ignores its cancellation: report what stands
            return handle.snapshot()


def report_stop(result: dict[str, Any], stop: Stop) -> None:
    """Add the reason a run was stopped to its printed ``errors``."""
    if stop.reason is not None:
        kind = "Interrupted" if stop.interrupted else "TimeoutError"
        result["errors"] = [*result["errors"], {"type": kind, "message": stop.reason}]


def exit_now_if_threads_linger(code: int) -> None:
    """End the process with ``code`` at once if node threads still run (never wait on them)."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
