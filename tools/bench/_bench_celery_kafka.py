"""``_bench_celery``'s app on kombu's confluent-kafka transport, for ``bench_kafka.py``.

Same tasks, same canvas (``_bench_celery.workflow``), Redis as the result backend (a native
chord join); the broker is Kafka at ``BENCH_CELERY_BOOTSTRAP`` through kombu's
``confluentkafka://HOST:PORT`` transport: a virtual transport whose queue is a topic (created
on first use, one partition, replication 1), one producer per topic flushed after every
message, one consumer per topic (group ``<topic>-consumer-group``, offsets committed on ack).
Every transport option is kombu's default except ``polling_interval`` (the sleep after an
empty poll, kombu's default 1 s; ``BENCH_CELERY_POLLING_INTERVAL`` sets it, empty: the
default) and ``wait_time_seconds`` (``BENCH_CELERY_WAIT_TIME``, the consumer's poll timeout;
empty: kombu's default, 5 s).

``celery -A _bench_celery_kafka worker`` (``tools/bench`` on ``PYTHONPATH``) builds ``app``
from the ``BENCH_CELERY_*`` variables and announces readiness in ``BENCH_CELERY_READY`` as
``_bench_celery`` does (its signal handler is connected when it is imported).
"""

from __future__ import annotations

import os
from typing import Any

import _bench_celery


def broker_url(bootstrap: str) -> str:
    """``confluentkafka://`` URL for a bootstrap server such as ``127.0.0.1:19092``."""
    return f"confluentkafka://{bootstrap}"


def make_app(
    *,
    bootstrap: str,
    backend: str,
    queue: str,
    prefix: str,
    polling_interval: str = "",
    wait_time: str = "",
) -> Any:  # noqa: ANN401 - celery is untyped
    """``_bench_celery.make_app`` with Kafka at ``bootstrap`` as the broker."""
    app = _bench_celery.make_app(
        broker=broker_url(bootstrap), backend=backend, queue=queue, prefix=prefix
    )
    options: dict[str, float] = {}
    if polling_interval:
        options["polling_interval"] = float(polling_interval)
    if wait_time:
        options["wait_time_seconds"] = float(wait_time)
    app.conf.broker_transport_options = options
    return app


def _from_environment() -> Any:  # noqa: ANN401
    env = os.environ
    return make_app(
        bootstrap=env.get("BENCH_CELERY_BOOTSTRAP", "127.0.0.1:19092"),
        backend=env.get("BENCH_CELERY_BACKEND", "redis://"),
        queue=env.get("BENCH_CELERY_QUEUE", "bench-celery"),
        prefix=env.get("BENCH_CELERY_PREFIX", "bench-celery:"),
        polling_interval=env.get("BENCH_CELERY_POLLING_INTERVAL", ""),
        wait_time=env.get("BENCH_CELERY_WAIT_TIME", ""),
    )


app = _from_environment()
