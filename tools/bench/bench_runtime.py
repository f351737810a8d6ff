"""Per-node orchestration overhead of the in-memory FlowRuntime, against TypeScript Flowcraft.

Shapes: a chain of n no-op nodes, and a fan-out/fan-in of n no-op nodes between a start and a
join. Node forms: ``async def`` no-ops, plain sync no-ops (thread-pool dispatch) and sync no-ops
marked inline. Every measurement runs in a fresh process (so peak RSS is its own); each figure is
the median of ``--repeat`` runs. TypeScript Flowcraft 2.10.1 (npm ``flowcraft``, run with node)
is measured on the same shapes in the same run, and the ratio is reported.

    python tools/bench/bench_runtime.py                  # markdown table on stdout
    python tools/bench/bench_runtime.py --sizes 1000,5000 --repeat 3 --no-ts
    python tools/bench/bench_runtime.py --tracing --no-ts    # + flowcraft.core.otel middleware

``--tracing`` measures every row twice more, interleaved with the plain runs: with
``flowcraft.core.otel.Instrumentation`` as middleware on the OpenTelemetry API's no-op tracer
and meter providers (the cost of the instrumentation itself, not of an SDK), and reports its
µs per node and the overhead beside the plain figure. ``--tracing-baseline DIR`` adds a third
run to each repeat, traced with the flowcraft-core sources in DIR (for example
``git archive REV packages/flowcraft-core/src | tar -x -C /tmp/base`` and DIR
``/tmp/base/packages/flowcraft-core/src``, put first on ``PYTHONPATH``): before and after a
change measured side by side in one invocation.

Each run starts its timed window after a full garbage collection. Without it, a run in a
fresh process is charged whatever collection the imports left due: the traced variant
imports OpenTelemetry (tens of thousands of objects more), and the first full (generation 2)
collection of a process then fell inside a fan of 1,000's ~20 ms window, +12-14 ms, once per
process (measured: gone when any run came before it in the same process). That is a one-time
cost of starting a process, not a cost per node. ``--cpu`` reports the process's CPU time
instead of wall-clock time (Python only, with ``--no-ts``): steadier on a shared machine,
where other processes' load shows in wall-clock time (it still shows in CPU time through
caches and shared cores, less so).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from flowcraft.core._engine.plan import EdgeSpec, Plan, PlanNode, build_plan

TS_VERSION = "2.10.1"
TS_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flowcraft-bench"
TS_SCRIPT = """
import { createFlow, FlowRuntime } from 'flowcraft'
const [shape, n] = [process.argv[2], Number(process.argv[3])]
async function noop() { return { output: null } }
let flow = createFlow(`${shape}${n}`)
if (shape === 'chain') {
  for (let i = 0; i < n; i++) flow = flow.node(`n${i}`, noop)
  for (let i = 0; i < n - 1; i++) flow = flow.edge(`n${i}`, `n${i + 1}`)
} else {
  flow = flow.node('s', noop).node('j', noop)
  for (let i = 0; i < n; i++) flow = flow.node(`n${i}`, noop).edge('s', `n${i}`).edge(`n${i}`, 'j')
}
const runtime = new FlowRuntime({})
const t0 = process.hrtime.bigint()
const result = await flow.run(runtime, {})
const seconds = Number(process.hrtime.bigint() - t0) / 1e9
if (result.status !== 'completed') { console.error(result.status); process.exit(1) }
console.log(JSON.stringify({ seconds, rss: process.memoryUsage().rss }))
"""


def _plan(shape: str, n: int) -> Plan:

    if shape == "chain":
        nodes = [PlanNode(id=f"n{i}", uses="noop") for i in range(n)]
        edges = [EdgeSpec(source=f"n{i}", target=f"n{i + 1}") for i in range(n - 1)]
    else:
        nodes = [PlanNode(id="s", uses="noop"), PlanNode(id="j", uses="noop")]
        nodes += [PlanNode(id=f"n{i}", uses="noop") for i in range(n)]
        edges = [EdgeSpec(source="s", target=f"n{i}") for i in range(n)]
        edges += [EdgeSpec(source=f"n{i}", target="j") for i in range(n)]
    return build_plan(id=f"{shape}{n}", version="1", nodes=nodes, edges=edges)


def _middleware(traced: bool) -> list[object]:
    """The instrumentation on no-op providers (``--tracing``), or nothing."""
    if not traced:
        return []
    from flowcraft.core.otel import Instrumentation
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    return [
        Instrumentation(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    ]


def _one(shape: str, n: int, form: str, traced: bool = False) -> dict[str, float]:
    """Run one measurement in this process; print seconds and peak RSS as JSON."""
    from flowcraft.core._runtime.context import NodeContext
    from flowcraft.core._runtime.runtime import FlowRuntime

    async def anoop(ctx: NodeContext) -> None:
        return None

    def snoop(ctx: NodeContext) -> None:
        return None

    impl = anoop if form == "async" else snoop
    runtime = FlowRuntime(
        registry={"noop": impl}, inline_sync=form == "inline", middleware=_middleware(traced)
    )
    plan = _plan(shape, n)

    async def main() -> tuple[float, float]:
        gc.collect()  # what imports and set-up left is not the run's: see the module docstring
        began, cpu = time.perf_counter(), time.process_time()
        result = await runtime.run(plan)
        elapsed = time.perf_counter() - began, time.process_time() - cpu
        assert result.ok, result
        return elapsed

    seconds, cpu = asyncio.run(main())
    runtime.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "cpu": cpu, "rss": rss}


def _spawn(args: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def _python(
    shape: str, n: int, form: str, traced: bool = False, src: str | None = None
) -> dict[str, float]:
    extra = ["--traced"] if traced else []
    env = None if src is None else {**os.environ, "PYTHONPATH": src}
    return _spawn([sys.executable, __file__, "--one", shape, str(n), form, *extra], env)


def _ensure_ts() -> Path:
    script = TS_DIR / "bench.mjs"
    if not (TS_DIR / "node_modules" / "flowcraft").exists():
        TS_DIR.mkdir(parents=True, exist_ok=True)
        (TS_DIR / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", f"flowcraft@{TS_VERSION}"],
            cwd=TS_DIR,
            check=True,
        )
    script.write_text(TS_SCRIPT)
    return script


def _ts(shape: str, n: int) -> dict[str, float]:
    return _spawn(["node", str(_ensure_ts()), shape, str(n)])


def _median(runs: list[dict[str, float]], key: str = "seconds") -> tuple[float, float]:
    return statistics.median(r[key] for r in runs), max(r["rss"] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=3, metavar=("SHAPE", "N", "FORM"))
    parser.add_argument("--sizes", default="1000,5000,10000,100000")
    parser.add_argument("--ts-sizes", default="1000,5000,10000")
    parser.add_argument("--forms", default="async,sync,inline")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-ts", action="store_true")
    parser.add_argument(
        "--tracing", action="store_true", help="also measure with the otel middleware (no-op)"
    )
    parser.add_argument(
        "--tracing-baseline",
        metavar="DIR",
        help="with --tracing: also traced runs on the flowcraft-core sources in DIR",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="CPU time instead of wall-clock time (with --no-ts)"
    )
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu and not args.no_ts:
        parser.error("--cpu measures the Python runtime only: add --no-ts")
    if args.one:
        shape, n, form = args.one
        print(json.dumps(_one(shape, int(n), form, args.traced)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    ts_sizes = set() if args.no_ts else {int(s) for s in args.ts_sizes.split(",")}
    traced_head = (
        ("| traced µs/node | tracing overhead ", "|---:|---:") if args.tracing else ("", "")
    )
    if args.tracing and args.tracing_baseline:
        traced_head = (
            f"| baseline traced µs/node | baseline overhead {traced_head[0]}",
            f"|---:|---:{traced_head[1]}",
        )
    print(
        "| shape | nodes | form | µs/node (median) | peak RSS MiB | TS µs/node | TS/Python "
        f"{traced_head[0]}|"
    )
    print(f"|---|---:|---|---:|---:|---:|---:{traced_head[1]}|")
    for shape in ("chain", "fan"):
        for n in sizes:
            ts = _median([_ts(shape, n) for _ in range(args.repeat)]) if n in ts_sizes else None
            for form in args.forms.split(","):
                _row(args, (shape, n, form), ts)
    return 0


def _row(
    args: argparse.Namespace, case: tuple[str, int, str], ts: tuple[float, float] | None
) -> None:
    """Measure one shape, size and form (plain and traced runs interleaved); print its row."""
    shape, n, form = case
    plain: list[dict[str, float]] = []
    traced: list[dict[str, float]] = []
    baseline: list[dict[str, float]] = []
    for _ in range(args.repeat):
        plain.append(_python(shape, n, form))
        if args.tracing and args.tracing_baseline:
            baseline.append(_python(shape, n, form, traced=True, src=args.tracing_baseline))
        if args.tracing:
            traced.append(_python(shape, n, form, traced=True))
    key = "cpu" if args.cpu else "seconds"
    seconds, rss = _median(plain, key)
    per = seconds / n * 1e6
    ts_cells = ("", "")
    if ts is not None:
        ts_per = ts[0] / n * 1e6
        ts_cells = (f"{ts_per:.0f}", f"{ts_per / per:.1f}x")
    traced_cells = "".join(_overhead(runs, n, per, key) for runs in (baseline, traced) if runs)
    print(
        f"| {shape} | {n} | {form} | {per:.1f} | {rss / 2**20:.0f} | "
        f"{ts_cells[0]} | {ts_cells[1]} |{traced_cells}",
        flush=True,
    )


def _overhead(runs: list[dict[str, float]], n: int, plain_per: float, key: str) -> str:
    per = _median(runs, key)[0] / n * 1e6
    return f" {per:.1f} | {(per / plain_per - 1) * 100:+.1f} % |"


if __name__ == "__main__":
    sys.exit(main())
