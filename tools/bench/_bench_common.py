"""What the adapter benchmarks share (``bench_rabbitmq``, ``bench_sqs``, ``bench_kafka``).

* **Statistics**: :class:`Sample` (steps/s, p50/p99 step latency, run spans), nearest-rank
  :func:`percentile`, :func:`summarize`, :func:`median_sample` (each field's median over the
  repeats), :func:`verdict` (a ratio against a target, ``met`` / ``NOT met``).
* **The workload**: the 10-node fan-out/fan-in's step latencies (:func:`fan_gaps`,
  :func:`flowcraft_gaps`, :func:`celery_gaps`) and :func:`flowcraft_runs` (runs started at once
  or one after another through a :class:`~flowcraft.core.Client`).
* **Processes**: :func:`processes` (start, log to files, SIGTERM and wait after),
  :func:`wait_until`, :func:`logs_say`, :func:`child_env` (``tools/bench`` importable),
  :func:`celery_commands` (prefork or solo workers of a ``_bench_celery*`` app module).
* **Counts from worker processes**: a :data:`Snapshot` of counters per kind and key;
  :func:`dump_on_sigusr1` (in the worker: write the counts to a file on SIGUSR1, with a
  sequence number) and :func:`worker_counts` (in the bench: signal every worker, wait for its
  file, sum), :func:`difference` and :func:`total`.
* **CPU time** from ``/proc`` (:func:`process_cpu`, :func:`cpu_spent`).
* **The command line**: :func:`add_common_arguments` (runs, workers, concurrency, Celery mode,
  round trips, sequential runs, repeats).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from _bench_nodes import FLOW_ID, MIDDLE
from flowcraft.core import Client, RunResult

HERE = Path(__file__).resolve().parent
STEPS = 2 + len(MIDDLE)
Stamp = Mapping[str, float]
#: ``{kind: {key: count}}`` (kinds such as ``"calls"``, ``"requests"``, ``"errors"``).
Snapshot = dict[str, dict[str, int]]


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One measurement of one configuration."""

    steps_per_s: float
    p50_ms: float
    p99_ms: float
    #: One run in flight only (else None), p50 over the runs: start call -> result returned,
    #: start call -> the join's end (the steps, the first hop included), join end -> result.
    run_ms: float | None = None
    steps_ms: float | None = None
    tail_ms: float | None = None


@dataclass(frozen=True, slots=True)
class RunSpan:
    """One run in flight: wall-clock times (``time.time()``, as the nodes stamp)."""

    start: float  # the client's start call
    join_end: float  # the last node's end, stamped by the node
    result: float  # the result in the client's hands


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summarize(
    steps: int, wall: float, gaps: Sequence[float], spans: Sequence[RunSpan] = ()
) -> Sample:
    """Throughput and p50/p99 latency (ms) of one configuration run (and its run spans)."""
    sample = Sample(
        steps_per_s=steps / wall,
        p50_ms=percentile(gaps, 0.50) * 1e3,
        p99_ms=percentile(gaps, 0.99) * 1e3,
    )
    if not spans:
        return sample
    return replace(
        sample,
        run_ms=percentile([s.result - s.start for s in spans], 0.50) * 1e3,
        steps_ms=percentile([s.join_end - s.start for s in spans], 0.50) * 1e3,
        tail_ms=percentile([s.result - s.join_end for s in spans], 0.50) * 1e3,
    )


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Each field's median over the repeats."""

    def median(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return Sample(
        steps_per_s=statistics.median(s.steps_per_s for s in samples),
        p50_ms=statistics.median(s.p50_ms for s in samples),
        p99_ms=statistics.median(s.p99_ms for s in samples),
        run_ms=median([s.run_ms for s in samples]),
        steps_ms=median([s.steps_ms for s in samples]),
        tail_ms=median([s.tail_ms for s in samples]),
    )


def verdict(ratio: float, target: float, *, above: bool) -> str:
    """``"1.73x (met)"``: ``ratio`` against ``target`` (``above``: at least, else at most)."""
    met = ratio >= target if above else ratio <= target
    return f"{ratio:.2f}x ({'met' if met else 'NOT met'})"


# -- the workload's step latencies ------------------------------------------------------------


def fan_gaps(start: Stamp, mids: Sequence[Stamp], join: Stamp) -> list[float]:
    """The 9 step latencies of one run: start -> each middle; last middle end -> join."""
    gaps = [mid["t0"] - start["t1"] for mid in mids]
    gaps.append(join["t0"] - max(mid["t1"] for mid in mids))
    return gaps


def flowcraft_gaps(result: RunResult) -> list[float]:
    """The step latencies of one finished run, from its node outputs."""
    assert result.status.value == "completed", f"run {result.run_id} ended {result.status}"
    out = result.outputs
    return fan_gaps(out["start"], [out[m] for m in MIDDLE], out["join"])


def celery_gaps(result: Mapping[str, Any]) -> list[float]:
    """The step latencies of one finished Celery run, from the stamps ``join`` returned."""
    return fan_gaps(result["start"], result["mids"], result["join"])


async def flowcraft_runs(client: Client, runs: int, *, at_once: bool) -> Sample:
    """``runs`` runs started at once (results awaited in start order) or one after another."""
    began = time.perf_counter()
    if at_once:
        handles = await asyncio.gather(*(client.start(FLOW_ID, i) for i in range(runs)))
        results = [await handle.result(timeout=900) for handle in handles]
    else:
        results, spans = [], []
        for i in range(runs):
            started = time.time()
            result = await (await client.start(FLOW_ID, i)).result(timeout=60)
            spans.append(RunSpan(started, result.outputs["join"]["t1"], time.time()))
            results.append(result)
    wall = time.perf_counter() - began
    gaps = [g for r in results for g in flowcraft_gaps(r)]
    return summarize(runs * STEPS, wall, gaps, () if at_once else spans)


# -- processes --------------------------------------------------------------------------------


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with ``tools/bench`` importable (the node modules live there)."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


@contextlib.contextmanager
def processes(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``commands`` (stdout and stderr to ``logs/worker-<i>.log``); SIGTERM and wait after."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for index, command in enumerate(commands):
            with (logs / f"worker-{index}.log").open("wb") as log:
                started.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
        yield started
    finally:
        stop(started)


def stop(started: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, wait for it (kill one that takes longer than 60 s)."""
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(ready: Callable[[], bool], started: Sequence[subprocess.Popen[bytes]]) -> None:
    """Poll ``ready`` until true; fail if a process exits first or after 60 s."""
    deadline = time.monotonic() + 60
    while not ready():
        if any(p.poll() is not None for p in started) or time.monotonic() > deadline:
            raise RuntimeError("a worker process exited or did not get ready; see its log")
        time.sleep(0.05)


def logs_say(logs: Path, count: int, marker: str) -> Callable[[], bool]:
    """True once ``count`` worker logs contain ``marker``."""

    def ready() -> bool:
        found = [p for p in logs.glob("worker-*.log") if marker in p.read_text(errors="replace")]
        return len(found) >= count

    return ready


def celery_commands(app_module: str, mode: str, workers: int, tag: str) -> list[list[str]]:
    """Workers of ``app_module``'s app: ``prefork``, one worker with ``workers`` pool
    processes; ``solo``, ``workers`` workers."""
    base = [
        sys.executable, "-m", "celery", "-A", app_module, "worker", "--loglevel=WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if mode == "prefork":
        return [[*base, "--pool=prefork", f"--concurrency={workers}", f"-n={tag}-0@%h"]]
    return [[*base, "--pool=solo", f"-n={tag}-{i}@%h"] for i in range(workers)]


def celery_version() -> str:
    """The installed Celery's version."""
    import celery

    return str(celery.__version__)


def purge_redis_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key starting with ``prefix`` (a configuration's Celery results)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- counts from worker processes -------------------------------------------------------------


def difference(after: Snapshot, before: Snapshot) -> Snapshot:
    """``after - before``, per kind and key (keys that did not change left out)."""
    result: Snapshot = {}
    for kind, counts in after.items():
        earlier = before.get(kind, {})
        result[kind] = {
            k: n - earlier.get(k, 0) for k, n in counts.items() if n != earlier.get(k, 0)
        }
    return result


def total(snapshots: Sequence[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots."""
    result: dict[str, Counter[str]] = {}
    for snap in snapshots:
        for kind, counts in snap.items():
            result.setdefault(kind, Counter()).update(counts)
    return {kind: dict(counts) for kind, counts in result.items()}


def dump_on_sigusr1(target: Path, snapshot: Callable[[], Snapshot]) -> None:
    """In a worker process: on every SIGUSR1, write ``snapshot()`` to ``target`` (JSON with a
    ``seq`` counting the signals, replaced atomically)."""
    seq = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal seq
        del signum, frame
        seq += 1
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps({"seq": seq, "pid": os.getpid(), **snapshot()}))
        os.replace(partial, target)

    signal.signal(signal.SIGUSR1, dump)


async def worker_counts(
    started: Sequence[subprocess.Popen[bytes]], files: Sequence[Path], seq: int
) -> Snapshot:
    """SIGUSR1 every worker, wait until each wrote count number ``seq``; their sum."""
    for process in started:
        process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    snapshots: list[Snapshot] = []
    for path in files:
        while True:
            found = _read_counts(path)
            if found is not None and found["seq"] >= seq:
                snapshots.append({k: v for k, v in found.items() if isinstance(v, dict)})
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                raise RuntimeError(f"no counts in {path}; see the worker logs")
            await asyncio.sleep(0.01)
    return total(snapshots)


def _read_counts(path: Path) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return found


# -- CPU time ---------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its live descendants (0: gone).

    ``/proc/PID/stat`` counts every thread the process ever had; threads that come and go
    while their ``children`` files are read are skipped.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    children: list[int] = []
    for task in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            children.extend(int(child) for child in (task / "children").read_text().split())
    return (int(fields[11]) + int(fields[12])) / _TICK + sum(process_cpu(c) for c in children)


def cpu_spent(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` per key."""
    return {key: after[key] - before.get(key, 0.0) for key in after}


def service_pids(repo: Path, names: Sequence[str]) -> dict[str, int]:
    """The pids of ``tools/services``' servers ``names`` from their pid files (missing: left
    out)."""
    found: dict[str, int] = {}
    for name in names:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int((repo / ".services" / "run" / f"{name}.pid").read_text().strip())
            if Path(f"/proc/{pid}").exists():
                found[name] = pid
    return found


# -- the command line -------------------------------------------------------------------------


def add_common_arguments(
    parser: argparse.ArgumentParser, *, runs: int, round_trips: int, sequential_runs: int
) -> None:
    """``--runs``, ``--workers``, ``--concurrency``, ``--celery-mode``, ``--no-celery``,
    ``--round-trips``, ``--sequential-runs`` and ``--repeat`` (defaults per benchmark)."""
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--concurrency", type=int, default=16, help="per flowcraft worker")
    parser.add_argument("--celery-mode", choices=["prefork", "solo"], default="prefork")
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--round-trips", type=int, default=round_trips)
    parser.add_argument("--sequential-runs", type=int, default=sequential_runs, help="0: skip")
    parser.add_argument("--repeat", type=int, default=3)
