r"""A ``flowcraft worker`` process that counts its SQS and DynamoDB calls (``bench_sqs.py``).

    python -m _bench_sqs_worker --counts FILE worker --backend sqs --option ... \
        # tools/bench on PYTHONPATH; everything after --counts FILE is flowcraft's command line

It runs ``flowcraft.core.cli.main`` unchanged (the same worker as ``python -m flowcraft.core
worker``), after hooking :class:`Calls` onto the boto3 clients of every ``flowcraft.sqs`` ``Aws``
the process creates. On SIGUSR1 it writes what it counted so far to ``FILE`` (JSON, replaced
atomically, with a ``seq`` that counts the signals), so the bench can take the difference over
exactly its measured window (no start-up, no shutdown).

:class:`Calls` is also what the bench uses for its own client's clients.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _bench_common import Snapshot, difference, dump_on_sigusr1, total

__all__ = ["Calls", "Snapshot", "difference", "total"]


class Calls:
    """Counts, per ``service.Operation``, what botocore's event hooks see on watched clients.

    * ``calls``: ``before-call.*``, once per API call (botocore's retries are inside it);
    * ``requests``: ``before-send.*``, once per HTTP attempt (retries show as the excess);
    * ``errors``: ``after-call.*`` answers carrying an error, per ``service.Operation.Code``
      (a refused condition, a cancelled transaction, throttling);
    * ``items``: ``before-parameter-build.*``, the items a DynamoDB write request carries
      (``TransactWriteItems``' parts, ``BatchWriteItem``'s requests): moto's CPU grows with them;
    * ``tables``: DynamoDB calls on one item or index per ``service.Operation table[/index]``
      (the table's kind: contexts, statuses, coordination), to tell claims from locks.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._counts: dict[str, Counter[str]] = {
            "calls": Counter(),
            "requests": Counter(),
            "errors": Counter(),
            "items": Counter(),
            "tables": Counter(),
        }
        self._watched: set[int] = set()

    def watch(self, client: Any) -> None:  # noqa: ANN401 (a boto3 client)
        """Count ``client``'s calls from now on (a client already watched: nothing)."""
        with self._lock:
            if id(client) in self._watched:
                return
            self._watched.add(id(client))
        events = client.meta.events
        events.register("before-call.*", self._on_call)
        events.register("before-send.*", self._on_send)
        events.register("after-call.*", self._on_answer)
        events.register("before-parameter-build.dynamodb.*", self._on_params)

    def _on_call(self, event_name: str, **_: Any) -> None:  # noqa: ANN401
        self._add("calls", _operation(event_name))

    def _on_send(self, event_name: str, **_: Any) -> None:  # noqa: ANN401
        self._add("requests", _operation(event_name))  # returns None: the request goes out

    def _on_answer(self, event_name: str, parsed: Mapping[str, Any], **_: Any) -> None:  # noqa: ANN401
        error = parsed.get("Error") or {}
        if error.get("Code"):
            self._add("errors", f"{_operation(event_name)}.{error['Code']}")

    def _on_params(self, event_name: str, params: Mapping[str, Any], **_: Any) -> None:  # noqa: ANN401
        if event_name.endswith(".TransactWriteItems"):
            self._add("items", _operation(event_name), len(params.get("TransactItems", ())))
        elif event_name.endswith(".BatchWriteItem"):
            requests = params.get("RequestItems", {}).values()
            self._add("items", _operation(event_name), sum(len(r) for r in requests))
        elif "TableName" in params:
            table = str(params["TableName"]).rsplit("-", 1)[-1]
            index = f"/{params['IndexName']}" if "IndexName" in params else ""
            self._add("tables", f"{_operation(event_name)} {table}{index}")

    def _add(self, kind: str, key: str, count: int = 1) -> None:
        with self._lock:
            self._counts[kind][key] += count

    def snapshot(self) -> Snapshot:
        """What was counted so far."""
        with self._lock:
            return {kind: dict(counts) for kind, counts in self._counts.items()}


def _operation(event_name: str) -> str:
    """``before-call.sqs.ReceiveMessage`` -> ``sqs.ReceiveMessage``."""
    return event_name.split(".", 1)[1]


def _count_every_aws(calls: Calls) -> None:
    """Watch the clients of every ``flowcraft.sqs._aws.Aws`` created from now on."""
    from flowcraft.sqs import _aws

    original = _aws.Aws.__init__

    def init(self: _aws.Aws, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        original(self, *args, **kwargs)
        calls.watch(self.sqs_client)
        calls.watch(self.dynamodb_client)

    _aws.Aws.__init__ = init  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    """``--counts FILE`` then flowcraft's own command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--counts":
        print(__doc__, file=sys.stderr)
        return 2
    target, rest = Path(args[1]), args[2:]
    calls = Calls()
    _count_every_aws(calls)
    dump_on_sigusr1(target, calls.snapshot)
    from flowcraft.core.cli import main as flowcraft

    return flowcraft(rest)


if __name__ == "__main__":
    raise SystemExit(main())
