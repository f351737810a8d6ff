"""Loading + validating large generated blueprints (flowcraft-core, issue 3).

Run: ``python tools/bench/bench_load.py`` (prints a markdown table for BENCHMARKS.md).

Every figure is the median of 5 runs of ``parse_blueprint`` (models, every validation rule,
cycle check, expression compilation) on an already-parsed document; the JSON column adds
``json.loads`` of the text. In the *cold* columns every edge condition is new to the compile
cache (a fresh salt per run), so each of them is compiled; *warm* reloads the same document,
as a worker does when it loads a blueprint it has seen before.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from flowcraft.core import parse_blueprint

RUNS = 5
_salts = itertools.count()


def chain(count: int, salt: int = 0) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "uses": "work", "config": {"retry": {"max_attempts": 3}}}
        for i in range(count)
    ]
    edges = [
        {"source": f"n{i}", "target": f"n{i + 1}", "condition": f"input.step < {i + salt}"}
        for i in range(count - 1)
    ]
    return {"id": f"chain-{count}", "nodes": nodes, "edges": edges}


def fan(count: int, salt: int = 0) -> dict[str, Any]:
    workers = [{"id": f"w{i}", "uses": "work"} for i in range(count - 2)]
    nodes = [{"id": "start", "uses": "split"}, *workers, {"id": "join", "uses": "merge"}]
    edges = [
        {"source": "start", "target": w["id"], "action": "go", "condition": f"input.n > {salt}"}
        for w in workers
    ]
    edges += [{"source": w["id"], "target": "join"} for w in workers]
    return {"id": f"fan-{count}", "nodes": nodes, "edges": edges}


def median_ms(prepare: Callable[[], object], action: Callable[[Any], object]) -> float:
    timings = []
    for _ in range(RUNS):
        data = prepare()
        started = time.perf_counter()
        action(data)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def row(make: Callable[[int, int], dict[str, Any]], count: int) -> str:
    document = make(count, 0)
    parse_blueprint(document)  # warm-up, and fills the compile cache for the warm column
    warm = median_ms(lambda: document, parse_blueprint)
    cold = median_ms(lambda: make(count, next(_salts) + 1), parse_blueprint)
    cold_json = median_ms(
        lambda: json.dumps(make(count, next(_salts) + 1)),
        lambda text: parse_blueprint(json.loads(text)),
    )
    edges = len(document["edges"])
    times = f"{cold:.0f} ms | {cold_json:.0f} ms | {warm:.0f} ms"
    return f"| {document['id']} | {count} | {edges} | {times} |"


def main() -> None:
    print("| blueprint | nodes | edges | cold | cold incl. JSON parse | warm |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for make, count in ((chain, 1_000), (chain, 10_000), (fan, 1_000), (fan, 10_000)):
        print(row(make, count))


if __name__ == "__main__":
    main()
