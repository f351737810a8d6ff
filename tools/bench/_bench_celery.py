"""The fan-out/fan-in workload of ``bench_rabbitmq.py`` as Celery tasks (a chord).

One run is ``chain(start, chord([mid] * 8, join))``: the result of ``start`` goes to every
``mid``, the list of ``mid`` results to ``join``. Like the Flowcraft nodes, every task stamps
``time.time()`` at its start and end; ``mid`` passes the stamp of ``start`` along and ``join``
returns all ten stamps, so the run's final result carries everything needed for step latencies.

``make_app`` builds an app on a given broker, Redis result backend, queue name and Redis key
prefix (a fresh one per benchmark configuration). ``celery -A _bench_celery worker`` (with
``tools/bench`` on ``PYTHONPATH``) builds ``app`` from the ``BENCH_CELERY_*`` environment
variables and, once ready, creates a file named after its pid in the directory
``BENCH_CELERY_READY``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from _bench_nodes import MIDDLE, stamp
from celery import Celery, chain, chord
from celery.signals import worker_ready

Stamp = dict[str, float]


def _start() -> Stamp:
    return stamp(time.time())


def _mid(previous: Stamp) -> dict[str, Stamp]:
    return {"start": previous, "mid": stamp(time.time())}


def _join(mids: list[dict[str, Stamp]]) -> dict[str, Any]:
    began = time.time()
    return {"start": mids[0]["start"], "mids": [m["mid"] for m in mids], "join": stamp(began)}


def make_app(*, broker: str, backend: str, queue: str, prefix: str) -> Any:  # noqa: ANN401
    """A Celery app with the three tasks, consuming and publishing on ``queue`` only."""
    app = Celery("bench", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        result_backend_transport_options={"global_keyprefix": prefix},
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name="bench.start")(_start)
    app.task(name="bench.mid")(_mid)
    app.task(name="bench.join")(_join)
    return app


def workflow(app: Any) -> Any:  # noqa: ANN401 - celery is untyped
    """One run's canvas: ``start`` -> 8 x ``mid`` -> ``join``."""
    header = [app.signature("bench.mid") for _ in MIDDLE]
    return chain(app.signature("bench.start"), chord(header, app.signature("bench.join"), app=app))


def _from_environment() -> Any:  # noqa: ANN401
    env = os.environ
    return make_app(
        broker=env.get("BENCH_CELERY_BROKER", "amqp://"),
        backend=env.get("BENCH_CELERY_BACKEND", "redis://"),
        queue=env.get("BENCH_CELERY_QUEUE", "bench-celery"),
        prefix=env.get("BENCH_CELERY_PREFIX", "bench-celery:"),
    )


@worker_ready.connect  # type: ignore[untyped-decorator]
def _announce(**_: object) -> None:
    ready = os.environ.get("BENCH_CELERY_READY")
    if ready:
        (Path(ready) / str(os.getpid())).touch()


app = _from_environment()
