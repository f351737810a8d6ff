"""Faults specific to SQS + DynamoDB (moto), end to end with worker processes.

Workers run as ``flowcraft worker --backend sqs`` processes (``python -m flowcraft.core``) on
queues with a 2 s visibility timeout; the test process is the client. A worker SIGKILLed
mid-node, every connection to the services cut for 3 s mid-run (a TCP proxy in front of moto:
moto keeps its state in memory, so it is not restarted), a node longer than the visibility
window, poison messages, and throttled SQS calls. Each test checks that every run completes,
that nothing is committed twice (each node's committed output, its context write and what the
next node received carry the ticket of one and the same execution) and that nothing is lost
(no message left in the jobs queue, none dead-lettered but the poison).

The worker processes, journal, ``fault.step`` node and proxy are core's
(``flowcraft.core.testing.faults``): the workers load ``--registry
flowcraft.core.testing.faults:REGISTRY``; every execution of ``fault.step`` (and every throttled
call) leaves a line in the journal, which is how the test counts executions across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import botocore.awsrequest
import pytest
from flowcraft.core import (
    Blueprint,
    DistributedRunHandle,
    RunResult,
    load_blueprint,
)
from flowcraft.core import Worker as CoreWorker
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core.backends import Backend
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message
from flowcraft.core.testing.faults import (
    JOURNAL_ENV,
    REGISTRY,
    Journal,
    TcpProxy,
    WorkerProcesses,
    chain,
    check_run,
    note,
    process_session,
    until,
)
from flowcraft.core.testing.faults import results as final_results
from flowcraft.core.testing.harness import Session
from flowcraft.sqs import SqsAdapter, SqsBackend
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._schema import Names, drop_queues, ensure_queues

#: Restarts or disturbs shared servers (or kills their connections): runs alone, after the
#: parallel part of the integration run (see hatch.toml).
pytestmark = pytest.mark.exclusive

HERE = Path(__file__).resolve().parent
#: The queues' visibility timeout, seconds.
VISIBILITY = 2


def _throttled(journal: Journal) -> Counter[tuple[int, str]]:
    """``(pid, operation)`` -> throttling answers given (as the hooks noted them)."""
    return Counter((e["pid"], e["throttled"]) for e in journal.entries() if "throttled" in e)


@contextlib.asynccontextmanager
async def _session(
    endpoint: str, blueprint: Blueprint, tmp: Path, *, lease: float
) -> AsyncIterator[tuple[Session, WorkerProcesses]]:
    """A fresh namespace (destroyed afterwards: ``SqsBackend.destroy``), no worker yet; this
    process notes throttles in the journal too, and the workers can import this module."""
    options = {"endpoint_url": endpoint, "visibility_timeout": VISIBILITY}
    async with process_session("sqs", options, blueprint, tmp, lease=lease, pythonpath=[HERE],
                               note_here=True) as (s, workers):  # fmt: skip
        yield s, workers


async def _results(
    session: Session, handles: Sequence[DistributedRunHandle], seconds: float
) -> list[RunResult]:
    """Every run's final result within ``seconds``; else fail, saying where the rest stand:
    each node's stored status, the outbox (saved, maybe never sent) and the queues."""

    async def queues() -> list[str]:
        jobs, dead = session.backend.extra["queues"]
        return [f"jobs queue {await _queue_counts(session.backend, jobs)}",
                f"dead-letter queue {await _queue_counts(session.backend, dead)}"]  # fmt: skip

    return await final_results(handles, seconds, store=session.backend.store, describe=queues)


_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


async def _queue_counts(backend: Backend, url: str) -> dict[str, int]:
    aws: Aws = backend.extra["aws"]
    answer = await aws.sqs("get_queue_attributes", QueueUrl=url, AttributeNames=_COUNTS)
    return {k: int(v) for k, v in answer["Attributes"].items()}


async def _nothing_left(backend: Backend, *, dead: int = 0, seconds: float = 10) -> None:
    """Eventually no message in the jobs queue (every one was acked) and ``dead`` dead ones."""
    jobs, dead_url = backend.extra["queues"]
    deadline = time.monotonic() + seconds
    while True:
        left = await _queue_counts(backend, jobs)
        dead_left = sum((await _queue_counts(backend, dead_url)).values())
        if not any(left.values()) and dead_left == dead:
            return
        assert time.monotonic() < deadline, f"left in the queues: {left}, dead: {dead_left}"
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ a worker SIGKILLed


async def test_a_worker_process_killed_mid_node(aws_endpoint_url: str, tmp_path: Path) -> None:
    """SIGKILLed while three runs sleep in s1 (3 s): the messages come back after the visibility
    timeout, the leases run out, another worker process runs s1 again and finishes.
    (Killed once s1's message is out: s1 runs ahead in the victim, which holds that message
    back ``COPY_AFTER`` seconds; killed before, the run would wait for the reconciler.)"""
    blueprint = chain("sigkill", 0.1, 3.0, 0.1)
    async with _session(aws_endpoint_url, blueprint, tmp_path, lease=2.0) as (s, workers):
        victim = workers.start()
        handles = [await s.start("sigkill", "in") for _ in range(3)]
        runs = [h.run_id for h in handles]
        journal = workers.journal
        await until("s1 runs in the victim for every run", 30,
                    lambda: all(journal.steps(r, "s1") for r in runs))  # fmt: skip
        await asyncio.sleep(COPY_AFTER + 0.3)  # mid-node, s1's message sent (see the docstring)
        await workers.kill(victim)
        assert not any(journal.steps(r, "s1", "finished") for r in runs)
        rescuer = workers.start()
        results = await _results(s, handles, 30)
        await _nothing_left(s.backend)
    for result in results:
        check_run(result, blueprint, journal, "in")
        s1 = journal.steps(result.run_id, "s1")
        assert [e["pid"] for e in s1] == [victim.pid, rescuer.pid]  # ran again, elsewhere
        assert result.outputs["s1"]["ticket"].split("/")[1] == str(rescuer.pid)
        for node in ("s0", "s2"):  # finished work is never run again
            assert len(journal.steps(result.run_id, node)) == 1


# ------------------------------------------------------------------ connections cut


@pytest.fixture
async def proxy(aws_endpoint_url: str) -> AsyncIterator[TcpProxy]:
    async with TcpProxy.to(aws_endpoint_url) as started:
        yield started


async def test_every_connection_cut_for_three_seconds_mid_run(
    proxy: TcpProxy, tmp_path: Path
) -> None:
    """Workers and client talk to SQS and DynamoDB through the proxy; mid-run it cuts every
    connection and refuses new ones for 3 s, then lets them through again."""
    blueprint = chain("cut", *([0.3] * 6))
    async with _session(proxy.url, blueprint, tmp_path, lease=4.0) as (s, workers):
        workers.start()
        workers.start()
        handles = [await s.start("cut", "in") for _ in range(6)]
        journal = workers.journal
        await until("the runs are under way", 30, lambda: journal.finished() >= 8)
        aborted = await proxy.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(3.0)
        await proxy.resume()
        results = await _results(s, handles, 25)  # no reconciler: the workers alone
        took = time.monotonic() - cut_at
        await _nothing_left(s.backend)
    print(f"aborted {aborted} connections; runs done {took:.1f} s after the cut; "
          f"{proxy.accepted} connections in all")  # fmt: skip
    for result in results:
        check_run(result, blueprint, journal, "in")
    assert aborted > 0  # connections really were open (pooled, long polls)
    surfaced = workers.surfaced()
    # botocore's retries do not hide a 3 s outage (its retry quota, ~35 retries per client,
    # runs out at once; its backoff for connection errors starts at 25-50 ms): some calls fail
    # as TransientBackendError and the worker lets the message come back. Never permanent.
    print("errors the workers saw:", dict(surfaced))
    assert not [kind for kind in surfaced if not kind.startswith("TransientBackendError")]
    runs = {r.run_id for r in results}
    executions = Counter(
        (e["run"], e["node"]) for e in journal.entries()
        if e.get("phase") == "started" and e.get("run") in runs
    )  # fmt: skip
    print("steps run more than once:", {k: v for k, v in executions.items() if v > 1})


# ------------------------------------------------------------------ a long node


async def test_a_node_longer_than_the_visibility_window_runs_once(
    aws_endpoint_url: str, tmp_path: Path
) -> None:
    """Visibility 2 s, lease 2 s, node 5 s, two worker processes: the delivery is extended
    while it runs, so the other worker never gets it."""
    blueprint = chain("long", 5.0, 0.1)
    async with _session(aws_endpoint_url, blueprint, tmp_path, lease=2.0) as (s, workers):
        workers.start()
        workers.start()
        handle = await s.start("long", "in")
        (result,) = await _results(s, [handle], 30)
        await _nothing_left(s.backend)
    journal = workers.journal
    check_run(result, blueprint, journal, "in")
    assert len(journal.steps(result.run_id, "s0")) == 1
    assert len(journal.steps(result.run_id, "s1")) == 1


# ------------------------------------------------------------------ poison


async def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    aws_endpoint_url: str, tmp_path: Path
) -> None:
    """Garbage in a flowcraft envelope (injected through the port) and a raw body from a
    foreign producer (no flowcraft attributes): both dead-lettered with their reason, the
    worker process runs the runs started before and after them."""
    blueprint = chain("poison", 0.1, 0.1)
    async with _session(aws_endpoint_url, blueprint, tmp_path, lease=5.0) as (s, workers):
        jobs, dead_url = s.backend.extra["queues"]
        aws: Aws = s.backend.extra["aws"]
        workers.start()
        before = await s.start("poison", "before")
        assert s.backend.inject is not None
        await s.backend.inject(Message(id="poison-1", body=b"\x00\xffnot a job"))
        raw = "}{ not a flowcraft message \u00e9"
        await aws.sqs("send_message", QueueUrl=jobs, MessageBody=raw)
        after = await s.start("poison", "after")
        results = await _results(s, [before, after], 30)
        deadline = time.monotonic() + 20
        while len(dead := await s.backend.dead_letters()) < 2:
            assert time.monotonic() < deadline, f"dead letters: {dead}"
            await asyncio.sleep(0.2)
        await _nothing_left(s.backend, dead=2)
        bodies = await _dead_bodies(aws, dead_url)
        late = await s.start("poison", "late")  # still going after the poison
        results += await _results(s, [late], 30)
    reasons = dict(dead)
    assert len(reasons) == 2
    assert reasons["poison-1"].startswith("undecodable message"), reasons
    # The foreign message is known by its SQS message id (it has no id of its own), the id the
    # worker saw and the dead letter keeps; its body is kept as it came, with its reason.
    (foreign,) = [i for i, body in bodies.items() if body == raw]
    assert reasons[foreign].startswith("undecodable message"), reasons
    for result, first in zip(results, ("before", "after", "late"), strict=True):
        check_run(result, blueprint, workers.journal, first)


async def _dead_bodies(aws: Aws, url: str) -> dict[str, str]:
    """Message id -> body of what the dead-letter queue holds (made visible again)."""
    answer = await aws.sqs("receive_message", QueueUrl=url, MaxNumberOfMessages=10,
                           WaitTimeSeconds=1, VisibilityTimeout=5,
                           MessageAttributeNames=["All"])  # fmt: skip
    messages = answer.get("Messages", [])
    for message in messages:
        await aws.sqs("change_message_visibility", QueueUrl=url,
                      ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)  # fmt: skip
    return {
        m.get("MessageAttributes", {}).get("flowcraft-id", {}).get("StringValue", m["MessageId"]):
        m["Body"]
        for m in messages
    }  # fmt: skip


# ------------------------------------------------------------------ throttling

#: Throttling answers of SQS's JSON protocol: status, headers, body.
THROTTLING: dict[str, tuple[int, dict[str, str], dict[str, str]]] = {
    # SQS's own error (service model: awsQueryError code RequestThrottled, HTTP 403); the
    # query-compatibility header carries the code botocore reports.
    "RequestThrottled": (
        403,
        {"x-amzn-query-error": "RequestThrottled;Sender"},
        {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Request is throttled."},
    ),
    # The common error every AWS JSON service may answer.
    "ThrottlingException": (
        400,
        {},
        {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"},
    ),
}


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.body


class Throttle:
    """A botocore ``before-send`` hook on an SQS client: the first ``times`` calls of each of
    ``operations`` get a throttling answer (noted in the journal); later ones go through."""

    def __init__(self, shape: str, operations: Sequence[str], times: int = 2) -> None:
        self.shape = shape
        self.operations = frozenset(operations)
        self.times = times
        self.given: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(
        self, request: botocore.awsrequest.AWSPreparedRequest, event_name: str, **_: object
    ) -> botocore.awsrequest.AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            if operation not in self.operations or self.given[operation] >= self.times:
                return None
            self.given[operation] += 1
        if os.environ.get(JOURNAL_ENV):
            note({"throttled": operation})
        status, extra, body = THROTTLING[self.shape]
        headers = botocore.awsrequest.HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-RequestId"] = str(uuid.uuid4())
        for key, value in extra.items():
            headers[key] = value
        return botocore.awsrequest.AWSResponse(
            request.url, status, headers, _Body(json.dumps(body).encode())
        )


def throttled_worker(argv: Sequence[str]) -> None:
    """A worker process whose SQS calls are throttled at first (``python -m test_faults_sqs
    ENDPOINT NAMESPACE BLUEPRINT SHAPE``): what ``flowcraft worker`` does, plus the hook."""
    endpoint, namespace, path, shape = argv
    blueprint = load_blueprint(path, registry=REGISTRY)

    async def main() -> None:
        factory = SqsBackend(endpoint_url=endpoint, visibility_timeout=VISIBILITY)
        backend = await factory.create(namespace)
        aws: Aws = backend.extra["aws"]
        operations = ("ReceiveMessage", "SendMessageBatch", "DeleteMessageBatch")
        aws.sqs_client.meta.events.register("before-send.sqs", Throttle(shape, operations))
        worker = CoreWorker(queue=backend.queue, store=backend.store, registry=REGISTRY,
                            blueprints=[blueprint], coordination=backend.coordination,
                            lease=5.0)  # fmt: skip
        worker.install_signal_handlers()
        try:
            await worker.run()
        finally:
            await factory.close(backend)

    asyncio.run(main())


@pytest.mark.parametrize("shape", sorted(THROTTLING))
async def test_throttled_sqs_calls_are_retried(
    aws_endpoint_url: str, tmp_path: Path, shape: str
) -> None:
    """The client's first two SendMessageBatch calls and the worker process's first two
    ReceiveMessage, SendMessageBatch and DeleteMessageBatch calls are throttled: botocore
    retries them with backoff, every enqueue and receive succeeds, each step runs once. (s1
    outlasts ``COPY_AFTER``: the worker sends its message, held back until then.)"""
    blueprint = chain("throttled", 0.1, COPY_AFTER + 0.2, 0.1)
    async with _session(aws_endpoint_url, blueprint, tmp_path, lease=5.0) as (s, workers):
        client_aws: Aws = s.backend.extra["aws"]
        client_hook = Throttle(shape, ["SendMessageBatch"])
        client_aws.sqs_client.meta.events.register("before-send.sqs", client_hook)
        try:
            handles = [await s.start("throttled", i) for i in range(2)]
        finally:
            client_aws.sqs_client.meta.events.unregister("before-send.sqs", client_hook)
        worker = workers.start([
            sys.executable, "-m", "test_faults_sqs", aws_endpoint_url, workers.namespace,
            str(workers.blueprint), shape,
        ])  # fmt: skip
        results = await _results(s, handles, 30)
        await _nothing_left(s.backend)
    throttled = _throttled(workers.journal)
    assert throttled == Counter({
        (os.getpid(), "SendMessageBatch"): 2,
        (worker.pid, "ReceiveMessage"): 2,
        (worker.pid, "SendMessageBatch"): 2,
        (worker.pid, "DeleteMessageBatch"): 2,
    })  # fmt: skip
    for index, result in enumerate(results):
        check_run(result, blueprint, workers.journal, index)
        for node in ("s0", "s1", "s2"):
            assert len(workers.journal.steps(result.run_id, node)) == 1
    assert workers.log_lines("Traceback") == 0  # nothing surfaced: botocore retried them all


@pytest.mark.parametrize("shape", sorted(THROTTLING))
async def test_throttling_beyond_the_retries_is_a_transient_error(
    aws_endpoint_url: str, shape: str
) -> None:
    """When botocore's retries run out (``max_attempts`` 2: botocore's retries, so 3 attempts),
    the adapter raises TransientBackendError (a worker retries; never PermanentBackendError),
    and the next call goes through."""
    aws = Aws(endpoint_url=aws_endpoint_url, max_attempts=2)
    names = Names.of(f"t{uuid.uuid4().hex[:12]}")
    jobs, dead = await ensure_queues(aws, names, visibility_timeout=VISIBILITY,
                                     max_receive_count=5)  # fmt: skip
    queue = SqsAdapter(queue_url=jobs, dead_letter_queue_url=dead, aws=aws,
                       visibility_timeout=VISIBILITY)  # fmt: skip
    hook = Throttle(shape, ["SendMessageBatch", "ReceiveMessage"], times=3)
    aws.sqs_client.meta.events.register("before-send.sqs", hook)
    try:
        with pytest.raises(TransientBackendError, match="SendMessage"):
            await queue.enqueue(Message(id="m1", body=b"job"))
        with pytest.raises(TransientBackendError, match="receive_message"):
            await queue.receive(1, wait=0)
        await queue.enqueue(Message(id="m1", body=b"job"))
        (got,) = await queue.receive(1, wait=2)
        assert (got.message_id, got.body) == ("m1", b"job")
        await got.ack()
    finally:
        await queue.close()
        await drop_queues(aws, (jobs, dead))
        aws.close()


if __name__ == "__main__":
    throttled_worker(sys.argv[1:])
