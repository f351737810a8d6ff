"""A hot fan-in on SQS + DynamoDB: 1,000 predecessors into one join, three workers.

The join fires once, with every branch; the run's compare-and-set conflicts (cancelled
``TransactWriteItems``) are counted and printed (``-s``), the numbers BENCHMARKS.md reports.
"""

from __future__ import annotations

import time
from typing import Any

from flowcraft.core import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.sqs import SqsBackend

WIDTH = 1_000


async def test_a_thousand_predecessors_into_one_join(aws_endpoint_url: str) -> None:
    nodes = [n("S", "const", value=1), n("J", "echo")]
    edges = []
    for i in range(WIDTH):
        nodes.append(n(f"b{i}", "const", value=i))
        edges += [e("S", f"b{i}"), e(f"b{i}", "J")]
    blueprint = bp("hot", nodes, edges)
    harness = Harness(SqsBackend(endpoint_url=aws_endpoint_url, visibility_timeout=30))
    calls: dict[str, int] = {}

    def count(event_name: str, **kwargs: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        calls[operation] = calls.get(operation, 0) + 1
        error = kwargs.get("parsed", {}).get("Error", {}).get("Code")
        if error == "TransactionCanceledException":
            calls["conflicts"] = calls.get("conflicts", 0) + 1

    async with harness.session(blueprint, workers=3, concurrency=16) as s:
        aws = s.backend.extra["aws"]
        aws.dynamodb_client.meta.events.register("after-call.dynamodb", count)
        started = time.monotonic()
        result = await s.run("hot", timeout=300)
        elapsed = time.monotonic() - started
    assert result.status is RunStatus.COMPLETED
    assert result.output == {f"b{i}": i for i in range(WIDTH)}
    assert result.outputs["J"] == result.output
    print(f"\nhot fan-in of {WIDTH}: {elapsed:.1f} s, DynamoDB calls {dict(sorted(calls.items()))}")
