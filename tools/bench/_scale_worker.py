r"""A worker process of ``bench_scale.py``: one ``Worker`` over a counting run store.

    python -m _scale_worker --backend rabbitmq [--option KEY=VALUE ...] --namespace NS \
        --width N [--parked-after-task] --counts FILE    # tools/bench on PYTHONPATH

It knows the blueprints ``_scale_common.flows`` builds (the digests match the bench's), opens
the backend's ports of ``NS`` as ``flowcraft worker`` does, touches ``FILE.ready`` once it
consumes, stops gracefully on SIGTERM (running jobs finish and commit) and then writes its
counts (saves, refused saves, full and catch-up loads, bytes, ``ConflictError``s) to ``FILE``
as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from _scale_common import Counts, count_store, counting_conflicts, flows, uncount_store
from flowcraft.core import Worker
from flowcraft.core.backends import Backend, load_backend_factory


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--width", type=int, default=0, help="the fan-in's width (0: none)")
    parser.add_argument("--parked-after-task", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--counts", type=Path, required=True, metavar="FILE")
    return parser


def _worker(args: argparse.Namespace, backend: Backend) -> Worker:
    known = flows(args.width, after_task=args.parked_after_task)
    registry: dict[str, object] = {}
    for flow in known:
        registry.update(flow.registry())
    return Worker(
        queue=backend.queue,
        store=backend.store,
        coordination=backend.coordination,
        registry=registry,
        blueprints=[flow.build() for flow in known],
        concurrency=args.concurrency,
        lease=args.lease,
    )


async def serve(args: argparse.Namespace) -> Counts:
    """Consume until SIGTERM; return what this process cost the store."""
    options = dict(pair.split("=", 1) for pair in args.option)
    factory = load_backend_factory(args.backend, options)
    backend = await factory.create(args.namespace)
    counts = Counts()
    count_store(backend, counts)
    try:
        worker = _worker(args, backend)
        worker.install_signal_handlers()
        gc.freeze()  # as `flowcraft worker` does: what is loaded now lives as long as we do
        args.counts.with_suffix(".ready").touch()
        with counting_conflicts(counts):
            await worker.run()
    finally:
        uncount_store(backend)
        await factory.close(backend)
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Serve, then write the counts."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    profile_dir = os.environ.get("FLOWCRAFT_BENCH_PROFILE")
    if profile_dir:  # where a worker's time goes: one cProfile dump per process
        with cProfile.Profile() as profiler:
            counts = asyncio.run(serve(args))
        profiler.dump_stats(Path(profile_dir) / f"worker-{os.getpid()}.prof")
    else:
        counts = asyncio.run(serve(args))
    args.counts.write_text(counts.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
