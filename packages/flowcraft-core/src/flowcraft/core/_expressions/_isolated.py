"""Evaluations that may be expensive run in an evaluator process, killed when out of budget.

The CEL extension holds the GIL for a whole evaluation and never checks for signals, so an
evaluation cannot be stopped inside the process that started it (see the package docstring for
the measurements). An evaluator process can: :func:`evaluate_isolated` sends the source and the
variables to an idle evaluator, waits at most the budget for the answer, and kills the evaluator
if none came (a fresh one is started at once, ready for the next request).

Evaluators are started lazily, one per concurrent isolated evaluation (at most
:data:`MAX_IDLE` are kept idle), and each caps its address space at :data:`MEMORY_LIMIT`. A
process that forks gets its own evaluators; the inherited ones are left to the parent.
"""

from __future__ import annotations

import atexit
import io
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowcraft.core._expressions._cel import cel_engine

#: Bytes of address space an evaluator process may use (CEL values of a runaway ``map``).
MEMORY_LIMIT = 1 << 30
#: Idle evaluator processes kept for the next isolated evaluation.
MAX_IDLE = 2

_SANDBOX = Path(__file__).with_name("_sandbox.py")
_HEADER = struct.Struct(">Q")
#: Seconds an evaluator process may take to start.
_START_WAIT = 30.0
#: Seconds an evaluator whose stdin closed gets to end before it is killed.
_EXIT_WAIT = 2.0


class IsolatedError(Exception):
    """The evaluation did not answer: ``overrun`` when out of budget, else the evaluator died."""

    def __init__(self, message: str, *, overrun: bool) -> None:
        super().__init__(message)
        self.overrun = overrun


@dataclass(frozen=True, slots=True)
class Answer:
    """What the evaluator answered: a value, or an error's kind and message."""

    value: object = None
    error: tuple[str, str] | None = None


def evaluate_isolated(source: str, variables: dict[str, object], budget: float) -> Answer:
    """Evaluate ``source`` in an evaluator process, waiting at most ``budget`` seconds.

    Raises:
        IsolatedError: No answer within the budget, or the evaluator died (out of memory).
    """
    evaluator = _POOL.take()
    try:
        answer = evaluator.ask(pickle.dumps((source, variables)), budget)
    except IsolatedError:
        evaluator.kill()
        _POOL.replenish()
        raise
    _POOL.give_back(evaluator)
    return answer


class _Evaluator:
    """One evaluator process and the framed pipe to it."""

    def __init__(self) -> None:
        extension = str(getattr(cel_engine(), "__file__", ""))
        command = [sys.executable, "-I", str(_SANDBOX), extension, str(MEMORY_LIMIT)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._started = False

    def ask(self, request: bytes, budget: float) -> Answer:
        """Send ``request``; the answer, read within ``budget`` seconds of sending it."""
        self._wait_started()
        deadline = time.monotonic() + budget
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(_HEADER.pack(len(request)) + request)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        (length,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        try:
            reply = _Replies(io.BytesIO(self._read(length, deadline))).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise IsolatedError(
                f"the evaluator answered unreadably ({exc})", overrun=False
            ) from None
        return Answer(value=reply[1]) if reply[0] == "ok" else Answer(error=(reply[1], reply[2]))

    def _wait_started(self) -> None:
        """Wait for the evaluator's ready frame (its start is not the evaluation's cost)."""
        if not self._started:
            try:
                self._read(_HEADER.size, time.monotonic() + _START_WAIT)
            except IsolatedError as exc:
                raise IsolatedError(
                    f"the evaluator process did not start: {exc}", overrun=False
                ) from None
            self._started = True

    def _read(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        chunks: list[bytes] = []
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while size > 0:
                chunk = self._read_some(selector, fd, size, deadline)
                chunks.append(chunk)
                size -= len(chunk)
        return b"".join(chunks)

    def _read_some(
        self, selector: selectors.BaseSelector, fd: int, size: int, deadline: float
    ) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise IsolatedError("overrun", overrun=True)
        chunk = os.read(fd, size)
        if not chunk:
            raise self._died()
        return chunk

    def _died(self) -> IsolatedError:
        code = self.process.wait()
        return IsolatedError(f"the evaluator process ended (exit status {code})", overrun=False)

    def kill(self) -> None:
        """End the evaluator now (it overran or died)."""
        self.process.kill()
        self.close()

    def close(self) -> None:
        """Close the pipes; an evaluator whose stdin closes ends by itself (waited for)."""
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        try:
            self.process.wait(timeout=_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class _Pool:
    """Idle evaluators of this process."""

    idle: list[_Evaluator] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> _Evaluator:
        with self.lock:
            self._forget_inherited()
            if self.idle:
                return self.idle.pop()
        return _Evaluator()

    def give_back(self, evaluator: _Evaluator) -> None:
        with self.lock:
            if len(self.idle) < MAX_IDLE and self.pid == os.getpid():
                self.idle.append(evaluator)
                return
        evaluator.close()

    def replenish(self) -> None:
        """Start an evaluator now, so the next isolated evaluation finds one ready."""
        with self.lock:
            if self.idle or self.pid != os.getpid():
                return
        self.give_back(_Evaluator())

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for evaluator in idle:
            evaluator.close()  # its stdin closes: it ends by itself

    def _forget_inherited(self) -> None:
        if self.pid != os.getpid():
            self.idle, self.pid = [], os.getpid()


_POOL = _Pool()
atexit.register(_POOL.close)


class _Replies(pickle.Unpickler):
    """Reads an evaluator's answer: plain values and the datetime types CEL returns, nothing else.

    The answer is built from values an evaluation of user data produced; even from a child
    process that went wrong, no other class is ever looked up (so nothing can be called).
    """

    _ALLOWED = frozenset({("datetime", "datetime"), ("datetime", "timedelta"),
                          ("datetime", "timezone"), ("datetime", "date")})  # fmt: skip

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            found: type = super().find_class(module, name)
            return found
        raise pickle.UnpicklingError(f"an evaluator answered with {module}.{name}")
