"""``_bench_celery``'s app on kombu's SQS transport (``sqs://``), for ``bench_sqs.py``.

Same tasks, same canvas (``_bench_celery.workflow``), any result backend (``result_backend``
gives Redis's or Celery's DynamoDB backend on the same endpoint); the broker is SQS
at ``BENCH_CELERY_ENDPOINT`` (moto): kombu takes the endpoint from the broker URL's host and
port (``sqs://KEY:SECRET@HOST:PORT``, plain HTTP with the transport option ``is_secure``
False); its workers receive with pycurl (kombu's asynchronous SQS client). Every transport
option is kombu's default (long polls of 10 s, ``polling_interval`` 1 s after an empty poll,
visibility timeout 30 min) except the region and ``is_secure``.

``celery -A _bench_celery_sqs worker`` (``tools/bench`` on ``PYTHONPATH``) builds ``app`` from
the ``BENCH_CELERY_*`` variables (``_bench_celery``'s, plus ``BENCH_CELERY_ENDPOINT``) and
announces readiness in ``BENCH_CELERY_READY`` as ``_bench_celery`` does (its signal handler is
connected when it is imported).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import _bench_celery

REGION = "us-east-1"


def broker_url(endpoint: str) -> str:
    """``sqs://`` URL for an SQS endpoint such as ``http://127.0.0.1:15000`` (dummy keys)."""
    where = urlsplit(endpoint)
    return f"sqs://testing:testing@{where.hostname}:{where.port}"


def result_backend(kind: str, *, endpoint: str, redis_url: str, tag: str) -> str:
    """The result backend URL of ``kind``: ``redis``, or ``dynamodb`` (table ``<tag>-results``).

    Celery's DynamoDB backend talks to a local endpoint when the URL's "region" is
    ``localhost`` (then ``http://localhost:PORT``); it creates its table on first use and
    counts a chord's finished parts with an atomic ``ADD`` (a native chord join).
    """
    if kind == "redis":
        return redis_url
    if kind == "dynamodb":
        port = urlsplit(endpoint).port
        return f"dynamodb://testing:testing@localhost:{port}/{tag}-results"
    raise ValueError(f"unknown result backend {kind!r} (redis, dynamodb)")


def make_app(
    *, endpoint: str, backend: str, queue: str, prefix: str, polling_interval: str = ""
) -> Any:  # noqa: ANN401
    """``_bench_celery.make_app`` with SQS at ``endpoint`` as the broker.

    ``polling_interval`` (seconds, as text; empty: kombu's default of 1 s) is the transport
    option of that name.
    """
    app = _bench_celery.make_app(
        broker=broker_url(endpoint), backend=backend, queue=queue, prefix=prefix
    )
    app.conf.broker_transport_options = {
        "region": REGION,
        "is_secure": urlsplit(endpoint).scheme == "https",
    }
    if polling_interval:
        app.conf.broker_transport_options["polling_interval"] = float(polling_interval)
    return app


def _from_environment() -> Any:  # noqa: ANN401
    env = os.environ
    return make_app(
        endpoint=env.get("BENCH_CELERY_ENDPOINT", "http://127.0.0.1:15000"),
        backend=env.get("BENCH_CELERY_BACKEND", "redis://"),
        queue=env.get("BENCH_CELERY_QUEUE", "bench-celery"),
        prefix=env.get("BENCH_CELERY_PREFIX", "bench-celery:"),
        polling_interval=env.get("BENCH_CELERY_POLLING_INTERVAL", ""),
    )


app = _from_environment()
