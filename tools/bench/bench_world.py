"""The World: ``events_create`` throughput on InMemoryWorld, and vercel-workflow on the bridge.

1. ``events_create`` on ``InMemoryWorld``: events/s appending to one run, and to 100 runs
   written concurrently (one asyncio task per run).
2. A 20-step vercel-workflow program (its own decorators) run to completion through
   ``VercelBridge`` on ``InMemoryWorld``, beside the same program on vercel-workflow's own
   ``LocalWorld`` (files + its embedded queue) — target: no slower. Each World runs in a
   fresh process; a figure is the median of ``--runs`` runs (start -> run completed, the
   status polled every 5 ms on both), and the ratio is taken in the same invocation.
3. Blueprints on a World (backend ``world-memory``) beside the same blueprints on the
   in-memory distributed backend (``memory``): ``bench_distributed.py``'s workload (``--bp-runs``
   runs of a 10-node chain of no-op nodes started at once, 4 in-process workers), median of
   ``--bp-repeat``; µs of wall time per node step (1 / steps/s) and the p50 step latency.

Needs ``flowcraft-core[vercel]``.

    python tools/bench/bench_world.py                      # markdown on stdout
    python tools/bench/bench_world.py --events 2000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowcraft.core.world import InMemoryWorld, NewEvent, RunCreatedData, StepCreatedData
from flowcraft.core.world.vercel import VercelBridge
from vercel import workflow as vw
from vercel.workflow._internal import world as vercel_world


def _created() -> NewEvent:
    data = RunCreatedData(workflow_name="bench", deployment_id="dpl_bench", input=b"in")
    return NewEvent(event_type="run_created", data=data)  # type: ignore[arg-type]


def _step(index: int) -> NewEvent:
    data = StepCreatedData(step_name="s", input=b"x")
    return NewEvent(event_type="step_created", correlation_id=f"step_{index}", data=data)  # type: ignore[arg-type]


async def _append(world: InMemoryWorld, count: int) -> None:
    result = await world.events_create(None, _created())
    assert result.run is not None
    for index in range(count):
        await world.events_create(result.run.run_id, _step(index))


async def events_per_second(total: int, runs: int) -> float:
    """Events appended per second: ``total`` events spread over ``runs`` concurrent runs."""
    world = InMemoryWorld()
    started = time.perf_counter()
    await asyncio.gather(*(_append(world, total // runs) for _ in range(runs)))
    elapsed = time.perf_counter() - started
    return (total // runs) * runs / elapsed


async def _program_runs(world_name: str, runs: int) -> list[float]:
    """Seconds from ``start()`` to a completed run, ``runs`` times, on one World."""
    import _bench_vercel_programs as programs  # the script folder is on sys.path

    world: vercel_world.World
    if world_name == "local":
        from vercel.workflow._internal.worlds.local import LocalWorld

        world = LocalWorld()
    else:
        world = VercelBridge(InMemoryWorld())
        await world.start()
    vercel_world.set_world(world)
    programs.serve()
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        run = await vw.start(programs.twenty_steps, 0)
        while (status := await run.status()) not in ("completed", "failed", "cancelled"):
            await asyncio.sleep(0.005)
        durations.append(time.perf_counter() - started)
        assert status == "completed", f"{world_name}: the run {status}"
    if isinstance(world, VercelBridge):
        await world.aclose()
    return durations


def _measure_in_process(world_name: str, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-world-") as data_dir:
        env = {**os.environ, "WORKFLOW_LOCAL_DATA_DIR": data_dir}
        command = [sys.executable, __file__, "--one", world_name, "--runs", str(runs)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{world_name} failed:\n{done.stderr[-3000:]}")
    durations: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return durations


def main() -> int:
    """Run the benchmarks and print markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--runs", type=int, default=5, help="program runs per World")
    parser.add_argument("--bp-runs", type=int, default=200, help="blueprint runs per backend")
    parser.add_argument("--bp-repeat", type=int, default=3, help="repeats per backend")
    parser.add_argument("--one", choices=["memory", "local"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(_program_runs(args.one, args.runs))))
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    one = asyncio.run(events_per_second(args.events, 1))
    many = asyncio.run(events_per_second(args.events, 100))
    print("| events_create on InMemoryWorld | events/s |\n|---|---:|")
    print(f"| one run, {args.events} events | {one:,.0f} |")
    print(f"| 100 runs concurrently, {args.events // 100 * 100} events | {many:,.0f} |\n")
    memory = statistics.median(_measure_in_process("memory", args.runs))
    local = statistics.median(_measure_in_process("local", args.runs))
    print(f"| 20-step vercel-workflow run (median of {args.runs}) | seconds |\n|---|---:|")
    print(f"| VercelBridge on InMemoryWorld | {memory:.3f} |")
    print(f"| vercel-workflow LocalWorld | {local:.3f} |")
    print(f"| ratio bridge / local (target <= 1) | {memory / local:.2f} |\n")
    print_blueprints_on_a_world(args.bp_runs, args.bp_repeat)
    return 0


def print_blueprints_on_a_world(runs: int, repeat: int) -> None:
    """µs per node step of blueprints on ``world-memory`` against ``memory``, same invocation."""
    import bench_distributed
    from flowcraft.core.backends import load_backend_factory

    figures: dict[str, dict[str, float]] = {}
    for name in ("memory", "world-memory"):
        factory = load_backend_factory(name, {})
        samples = [
            asyncio.run(bench_distributed._once(factory, runs, 10, 4, 16)) for _ in range(repeat)
        ]
        figures[name] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(f"| blueprints, {runs} runs x 10 nodes, 4 workers (median of {repeat}) "
          "| steps/s | µs per node step | p50 step ms |\n|---|---:|---:|---:|")  # fmt: skip
    for name, f in figures.items():
        print(f"| {name} | {f['steps_per_s']:,.0f} | {1e6 / f['steps_per_s']:,.0f} "
              f"| {f['p50_ms']:.2f} |")  # fmt: skip
    ratio = figures["memory"]["steps_per_s"] / figures["world-memory"]["steps_per_s"]
    print(f"| world-memory / memory, µs per step | | {ratio:.2f}x | |")


if __name__ == "__main__":
    raise SystemExit(main())
