r"""A ``flowcraft worker`` process that counts its Kafka requests and Cassandra statements.

    python -m _bench_kafka_worker --counts FILE worker --backend kafka --option ... \
        # tools/bench on PYTHONPATH; everything after --counts FILE is flowcraft's command line

It runs ``flowcraft.core.cli.main`` unchanged (the worker of ``python -m flowcraft.core
worker``) after installing :class:`Counts`' hooks, and writes what it counted to ``FILE`` on
every SIGUSR1 (``_bench_common.dump_on_sigusr1``), so ``bench_kafka.py`` takes the difference
over exactly its measured window. Kinds of the snapshot:

* ``kafka_requests``: Kafka protocol requests by API (``Produce``, ``Fetch``, ``OffsetCommit``,
  ``Heartbeat``, ...) summed over every client's brokers, from librdkafka's own statistics
  (``statistics.interval.ms`` = ``STATS_MS``, the ``brokers.*.req`` counters); every
  ``confluent_kafka.Producer`` and ``Consumer`` the process creates gets the setting and a
  ``stats_cb``. The figures are as fresh as the last statistics (at most ``STATS_MS`` old, at
  both ends of a window alike).
* ``kafka_calls``: the clients' Python calls (``produce``, ``poll``, ``consume``, ``commit``).
* ``cql``: statements sent by ``cassandra.cluster.Session.execute_async`` (what ``execute``
  uses too), by kind: the CQL verb, ``+LWT`` for a conditional statement, ``BATCH`` for a batch
  (the adapter's saves are single conditional batches).
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _bench_common import Snapshot, dump_on_sigusr1

__all__ = ["STATS_MS", "Counts", "cql_kind"]

STATS_MS = 100


class Counts:
    """Thread-safe counters plus each Kafka client's latest librdkafka request counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Counter[str]] = {"kafka_calls": Counter(), "cql": Counter()}
        self._requests: dict[str, Counter[str]] = {}  # client name -> request counts so far

    def add(self, kind: str, key: str) -> None:
        """Count one ``key`` of ``kind``."""
        with self._lock:
            self._counters[kind][key] += 1

    def on_stats(self, text: str) -> None:
        """librdkafka's ``stats_cb``: keep the client's cumulative request counts."""
        stats = json.loads(text)
        requests: Counter[str] = Counter()
        for broker in stats.get("brokers", {}).values():
            requests.update({k: int(v) for k, v in broker.get("req", {}).items() if v})
        with self._lock:
            self._requests[str(stats.get("name", id(stats)))] = requests

    def snapshot(self) -> Snapshot:
        """What was counted so far."""
        with self._lock:
            found = {kind: dict(counts) for kind, counts in self._counters.items()}
            requests: Counter[str] = Counter()
            for counts in self._requests.values():
                requests.update(counts)
        found["kafka_requests"] = dict(requests)
        return found


def cql_kind(statement: object) -> str:
    """``SELECT``, ``INSERT+LWT``, ``BATCH``, ...: what kind of statement is sent."""
    if type(statement).__name__ == "BatchStatement":
        return "BATCH"
    prepared = getattr(statement, "prepared_statement", None)
    query = getattr(prepared or statement, "query_string", statement)
    words = str(query).upper().split()
    verb = words[0] if words else "?"
    conditional = "IF" in words[1:]
    return f"{verb}+LWT" if conditional else verb


def _counting_clients(counts: Counts) -> None:
    """Replace ``confluent_kafka.Producer``/``Consumer`` by counting subclasses (before
    ``flowcraft.kafka`` imports them)."""
    import confluent_kafka

    def with_stats(config: Mapping[str, Any]) -> dict[str, Any]:
        return {**config, "statistics.interval.ms": STATS_MS, "stats_cb": counts.on_stats}

    class Producer(confluent_kafka.Producer):
        def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
            super().__init__(with_stats(config), **kwargs)

        def produce(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            counts.add("kafka_calls", "produce")
            return super().produce(*args, **kwargs)

    class Consumer(confluent_kafka.Consumer):
        def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:  # noqa: ANN401
            super().__init__(with_stats(config), **kwargs)

        def poll(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            counts.add("kafka_calls", "poll")
            return super().poll(*args, **kwargs)

        def consume(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            counts.add("kafka_calls", "consume")
            return super().consume(*args, **kwargs)

        def commit(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            counts.add("kafka_calls", "commit")
            return super().commit(*args, **kwargs)

    confluent_kafka.Producer = Producer  # type: ignore[misc,assignment]
    confluent_kafka.Consumer = Consumer  # type: ignore[misc,assignment]


def _counting_session(counts: Counts) -> None:
    """Count every statement cassandra-driver's sessions send."""
    from cassandra.cluster import Session

    original: Callable[..., Any] = Session.execute_async

    def execute_async(self: Any, query: object, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        counts.add("cql", cql_kind(query))
        return original(self, query, *args, **kwargs)

    Session.execute_async = execute_async


def main(argv: Sequence[str] | None = None) -> int:
    """``--counts FILE`` then flowcraft's own command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--counts":
        print(__doc__, file=sys.stderr)
        return 2
    counts = Counts()
    _counting_clients(counts)
    _counting_session(counts)
    dump_on_sigusr1(Path(args[1]), counts.snapshot)
    from flowcraft.core.cli import main as flowcraft

    return flowcraft(args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
