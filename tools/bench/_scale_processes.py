"""The worker processes of one ``bench_scale.py`` measurement (``_scale_worker.py``).

``worker_processes(...)`` starts them on a namespace, waits until each consumes, and yields a
:class:`WorkerProcesses`: ``guard(work)`` (awaits ``work``, but fails as soon as a process
exits), their summed resident memory (Linux ``/proc``) and ``stop()``, which sends SIGTERM,
waits for a clean exit and returns their summed counts. Logs and counts go to a
temporary directory (a failing process's log tail is in the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

from _scale_common import Counts

HERE = Path(__file__).resolve().parent
_T = TypeVar("_T")


class WorkerProcessError(RuntimeError):
    """A worker process exited early, did not get ready, or left no counts."""


def _env() -> dict[str, str]:
    """This environment with ``tools/bench`` importable (``_scale_worker``, the flows)."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise WorkerProcessError(f"process {pid} has no VmRSS")


class WorkerProcesses:
    """Started worker processes; :meth:`stop` ends them and sums their counts."""

    def __init__(self, arguments: Sequence[str], count: int, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        for index in range(count):
            command = [sys.executable, "-m", "_scale_worker", *arguments,
                       "--counts", str(self._counts(index))]  # fmt: skip
            with self._log(index).open("wb") as log:
                started = subprocess.Popen(command, env=_env(), stdout=log, stderr=log)
            self.processes.append(started)

    def _counts(self, index: int) -> Path:
        return self.directory / f"worker-{index}.json"

    def _log(self, index: int) -> Path:
        return self.directory / f"worker-{index}.log"

    def _failed(self, index: int, what: str) -> WorkerProcessError:
        tail = self._log(index).read_text(errors="replace")[-2000:]
        return WorkerProcessError(f"worker process {index} {what}; its log ends:\n{tail}")

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until every process consumes (its ``.ready`` file exists)."""
        deadline = time.monotonic() + timeout
        for index, process in enumerate(self.processes):
            while not self._counts(index).with_suffix(".ready").exists():
                if process.poll() is not None:
                    raise self._failed(index, f"exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise self._failed(index, f"was not ready after {timeout:.0f} s")
                await asyncio.sleep(0.05)

    async def guard(self, work: Awaitable[_T]) -> _T:
        """``work``'s result, unless a worker process exits first (then its error)."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # raises the process's error
            return await task
        finally:
            watch.cancel()
            task.cancel()

    async def _watch(self) -> None:
        while True:
            for index, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise self._failed(index, f"exited with {process.returncode}")
            await asyncio.sleep(0.5)

    def rss(self) -> int:
        """The processes' resident memory, summed (bytes)."""
        return sum(rss_bytes(process.pid) for process in self.processes)

    async def stop(self, timeout: float = 120.0) -> Counts:
        """SIGTERM every process, wait for it, and return their counts summed."""
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        total = Counts()
        for index, process in enumerate(self.processes):
            code = await asyncio.to_thread(process.wait, timeout)
            if code != 0 or not self._counts(index).exists():
                raise self._failed(index, f"exited with {code} and left no counts")
            total.add(Counts.from_json(self._counts(index).read_text()))
        return total

    def kill(self) -> None:
        """Kill what still runs (after a failure)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def worker_processes(arguments: Sequence[str], count: int) -> AsyncIterator[WorkerProcesses]:
    """``count`` ready ``_scale_worker`` processes with ``arguments`` (killed if still alive)."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
        started = WorkerProcesses(arguments, count, Path(directory))
        try:
            await started.ready()
            yield started
        finally:
            started.kill()
