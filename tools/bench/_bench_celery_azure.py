"""``_bench_celery``'s app on kombu's Azure Storage Queues transport, for ``bench_azure.py``.

Same tasks, same canvas (``_bench_celery.workflow``), results in Redis; the broker is Azure
Queue Storage (Azurite) through ``azurestoragequeues://<account key>@<queue endpoint>``, on the
queue ``BENCH_CELERY_QUEUE`` (a fresh name per configuration). Every transport option is
kombu's default (``polling_interval`` 1 s after an empty poll) except ``polling_interval`` when
``BENCH_CELERY_POLLING_INTERVAL`` is set.

``celery -A _bench_celery_azure worker`` (``tools/bench`` on ``PYTHONPATH``) builds ``app`` from
the ``BENCH_CELERY_*`` variables (``_bench_celery``'s, plus ``BENCH_CELERY_BROKER``) and
announces readiness in ``BENCH_CELERY_READY`` as ``_bench_celery`` does.
"""

from __future__ import annotations

import os
from typing import Any

import _bench_celery


def broker_url(connection_string: str) -> str:
    """``azurestoragequeues://KEY@URL`` of an Azure Storage connection string with a key."""
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return f"azurestoragequeues://{parts['AccountKey']}@{parts['QueueEndpoint'].rstrip('/')}"


def make_app(
    *, broker: str, backend: str, queue: str, prefix: str, polling_interval: str = ""
) -> Any:  # noqa: ANN401
    """``_bench_celery.make_app`` with Azure Storage Queues at ``broker`` (a kombu URL)."""
    app = _bench_celery.make_app(broker=broker, backend=backend, queue=queue, prefix=prefix)
    app.conf.broker_transport_options = {}
    if polling_interval:
        app.conf.broker_transport_options["polling_interval"] = float(polling_interval)
    return app


def _from_environment() -> Any:  # noqa: ANN401
    env = os.environ
    return make_app(
        broker=env.get("BENCH_CELERY_BROKER", "azurestoragequeues://"),
        backend=env.get("BENCH_CELERY_BACKEND", "redis://"),
        queue=env.get("BENCH_CELERY_QUEUE", "bench-celery"),
        prefix=env.get("BENCH_CELERY_PREFIX", "bench-celery:"),
        polling_interval=env.get("BENCH_CELERY_POLLING_INTERVAL", ""),
    )


app = _from_environment()
