"""Worker *processes* (``flowcraft worker``) of a fault test: started, killed, stopped, read."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowcraft.core.testing.faults._journal import JOURNAL_ENV, Journal

#: The ``--registry`` of the worker processes unless told otherwise: ``fault.step`` and the
#: conformance suite's nodes.
REGISTRY_SPEC = "flowcraft.core.testing.faults:REGISTRY"

#: A backend error as a worker logs it: ``flowcraft.core.errors.TransientBackendError:
#: dynamodb update_item: EndpointConnectionError: ...``.
_SURFACED = re.compile(r"errors\.(\w+BackendError): ((?:\w+ )?\w+): (\w+)")

#: How much of each worker's log :meth:`WorkerProcesses.stop` prints.
_LOG_TAIL = 6000


def surfaced_errors(text: str) -> Counter[str]:
    """The backend errors a worker log shows, as ``"<kind>: <operation>: <cause>"`` -> count.

    ``<kind>`` is the core error class (``TransientBackendError``, ``PermanentBackendError``),
    ``<operation>`` what the adapter was doing (one or two words), ``<cause>`` the first word
    after it (the driver's exception class, as the adapters' translation keeps it).
    """
    return Counter(": ".join(match.groups()) for match in _SURFACED.finditer(text))


def worker_command(
    backend: str,
    options: Mapping[str, object],
    *,
    namespace: str,
    registry: str,
    blueprint: Path,
    lease: float,
) -> list[str]:
    """The argv of ``python -m flowcraft.core worker`` for one backend and its options."""
    pairs = [a for name, value in options.items() for a in ("--option", f"{name}={value}")]
    return [
        sys.executable, "-m", "flowcraft.core", "worker", "--backend", backend, *pairs,
        "--namespace", namespace, "--registry", registry,
        "--blueprint", str(blueprint), "--lease", str(lease),
    ]  # fmt: skip


async def exited(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The exit code once ``proc`` ended; None if it still runs after ``seconds``.

    Polls with ``asyncio.sleep``: the test's loop (and any :class:`TcpProxy` in it) keeps
    running meanwhile.
    """
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


@dataclass(kw_only=True)
class WorkerProcesses:
    """``flowcraft worker --backend <backend>`` processes on one namespace.

    Every process gets ``--option name=value`` for each of ``options``, the namespace, the
    blueprint file, ``--lease`` and ``--registry`` (default :data:`REGISTRY_SPEC`); its
    environment is this process's plus :data:`JOURNAL_ENV` (naming ``journal``'s file) and
    ``pythonpath`` in front of ``PYTHONPATH``. Each one's stdout and stderr go to
    ``directory/worker<N>.log``.
    """

    backend: str
    options: Mapping[str, object]
    namespace: str
    blueprint: Path
    directory: Path
    lease: float
    journal: Journal
    registry: str = REGISTRY_SPEC
    pythonpath: Sequence[Path] = ()
    #: Seconds :meth:`stop` gives each process to drain after SIGTERM before SIGKILL.
    grace: float = 20.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def command(self) -> list[str]:
        """The CLI argv every :meth:`start` without a command of its own runs."""
        return worker_command(self.backend, self.options, namespace=self.namespace,
                              registry=self.registry, blueprint=self.blueprint,
                              lease=self.lease)  # fmt: skip

    def env(self) -> dict[str, str]:
        """The worker processes' environment."""
        paths = [*map(str, self.pythonpath), os.environ.get("PYTHONPATH", "")]
        pythonpath = os.pathsep.join(p for p in paths if p)
        return {**os.environ, "PYTHONPATH": pythonpath, JOURNAL_ENV: str(self.journal.path)}

    def start(self, command: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
        """One more worker process: :meth:`command`, or ``command`` in the same environment."""
        log = self.directory / f"worker{len(self.logs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(list(command or self.command()), stdout=out,
                                    stderr=subprocess.STDOUT, env=self.env())  # fmt: skip
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    async def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no ack, no nack, no commit, no lease renewal, no goodbye.

        Asserts the process died of it within 10 s.
        """
        os.kill(proc.pid, signal.SIGKILL)
        assert await exited(proc, 10) == -signal.SIGKILL, proc

    async def terminate(self, proc: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
        """SIGTERM: the worker drains, settles and leaves; asserts it exits 0 within ``seconds``."""
        proc.send_signal(signal.SIGTERM)
        assert await exited(proc, seconds) == 0, proc

    async def stop(self) -> None:
        """SIGTERM every live process (a graceful drain), SIGKILL what lingers past ``grace``.

        Then prints the tail of every log (pytest shows it when the test fails).
        """
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if await exited(proc, self.grace) is None:
                proc.kill()
                await exited(proc, 10)
        for log in self.logs:
            print(f"---- {log.name}\n{log.read_text(errors='replace')[-_LOG_TAIL:]}")

    def log_lines(self, needle: str) -> int:
        """How many times ``needle`` occurs in all worker logs so far."""
        return sum(log.read_text(errors="replace").count(needle) for log in self.logs)

    def surfaced(self) -> Counter[str]:
        """The backend errors all worker logs show so far (see :func:`surfaced_errors`)."""
        found: Counter[str] = Counter()
        for log in self.logs:
            found += surfaced_errors(log.read_text(errors="replace"))
        return found
