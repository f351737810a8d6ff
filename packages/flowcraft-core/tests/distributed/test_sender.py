"""``Sender``: messages of attempts run ahead, which no outbox keeps, are held back; those still
unsettled after ``copy_after`` (or at close) are sent until they go, the settled ones never."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine

import pytest
from flowcraft.core import MemoryJobQueue, MemoryRunStore
from flowcraft.core._distributed import jobs as j
from flowcraft.core._distributed import sender as sending
from flowcraft.core._distributed.sender import Sender
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message


class _RefusingQueue(MemoryJobQueue):
    """Refuses the first ``refusals`` enqueues; records the ids it took."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.taken: list[str] = []

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise TransientBackendError("enqueue: connection refused")
        self.taken.append(message.id)
        await super().enqueue(message, delay=delay, sticky=sticky)


def _sender(
    queue: MemoryJobQueue, tasks: set[asyncio.Task[None]], copy_after: float = 0.0
) -> Sender:
    def spawn(work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    return Sender(store=MemoryRunStore(), queue=queue, clock=time.time, defer=None,
                  sticky=False, spawn=spawn, copy_after=copy_after)  # fmt: skip


def _message(node: str) -> Message:
    return Message(id=f"node:r:{node}#1", body=b"{}")


def _job(message: Message) -> j.Job:
    return j.Job(id=message.id, kind=j.JobKind.RUN_NODE, run_id="r", blueprint="b",
                 version="1", digest="d")  # fmt: skip


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending, "OWED_FIRST_WAIT", 0.01)


async def _settle(tasks: set[asyncio.Task[None]], sender: Sender | None = None) -> None:
    """Until the sender's tasks are done and (``sender``) no message is held any more."""
    while tasks or (sender is not None and sender._holds):
        if tasks:
            await asyncio.wait(set(tasks))
        else:
            await asyncio.sleep(0.01)


async def test_a_message_run_ahead_is_sent_again_until_the_queue_takes_it() -> None:
    queue, tasks = _RefusingQueue(refusals=4), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks)
    ahead, plain = _message("b"), _message("c")
    jobs = {m.id: _job(m) for m in (ahead, plain)}
    task = sender.later("r", [ahead, plain], jobs, {ahead.id})
    assert task is not None
    with pytest.raises(TransientBackendError):
        await task  # its caller sees the failure (the outbox message is the next decide's)
    await _settle(tasks, sender)
    assert queue.taken == [ahead.id]  # sent once the queue took messages; the plain one not


async def test_a_message_run_ahead_is_held_and_never_sent_once_settled() -> None:
    queue, tasks = _RefusingQueue(refusals=0), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks, copy_after=0.2)
    settled, unsettled, plain = _message("b"), _message("c"), _message("d")
    jobs = {m.id: _job(m) for m in (settled, unsettled, plain)}
    began = time.monotonic()
    task = sender.later("r", [settled, unsettled, plain], jobs, {settled.id, unsettled.id})
    assert task is not None
    await task  # the caller waits for the plain message only
    assert queue.taken == [plain.id]
    await asyncio.sleep(0.05)
    sender.settled([settled.id, "node:r:other#1"])  # (ids not held are ignored)
    assert queue.taken == [plain.id]
    await _settle(tasks, sender)
    assert queue.taken == [plain.id, unsettled.id]
    assert time.monotonic() - began >= 0.2


async def test_held_messages_alone_give_their_caller_nothing_to_wait_for() -> None:
    queue, tasks = _RefusingQueue(refusals=0), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks, copy_after=0.05)
    ahead = _message("b")
    assert sender.later("r", [ahead], {ahead.id: _job(ahead)}, {ahead.id}) is None
    assert queue.taken == []
    await _settle(tasks, sender)
    assert queue.taken == [ahead.id]


async def test_a_closing_sender_sends_held_messages_at_once() -> None:
    queue, tasks = _RefusingQueue(refusals=0), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks, copy_after=60.0)
    ahead, settled = _message("b"), _message("c")
    jobs = {m.id: _job(m) for m in (ahead, settled)}
    assert sender.later("r", [ahead, settled], jobs, {ahead.id, settled.id}) is None
    sender.settled([settled.id])
    await asyncio.sleep(0.01)
    assert queue.taken == []
    sender.close()
    await asyncio.wait_for(_settle(tasks), 2)
    assert queue.taken == [ahead.id]


async def test_a_closed_sender_holds_nothing() -> None:
    queue, tasks = _RefusingQueue(refusals=0), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks, copy_after=60.0)
    sender.close()
    ahead = _message("b")
    assert sender.later("r", [ahead], {ahead.id: _job(ahead)}, {ahead.id}) is None
    await asyncio.wait_for(_settle(tasks, sender), 2)
    assert queue.taken == [ahead.id]


async def test_a_closing_sender_gives_an_owed_message_one_last_try(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, tasks = _RefusingQueue(refusals=1_000), set[asyncio.Task[None]]()
    sender = _sender(queue, tasks)
    ahead = _message("b")
    assert sender.later("r", [ahead], {ahead.id: _job(ahead)}, {ahead.id}) is None
    await asyncio.sleep(0.05)  # refused a few times (copy_after 0: sent after the save)
    refused = queue.refusals
    assert refused < 1_000
    sender.close()
    with caplog.at_level(logging.WARNING, logger="flowcraft.coordinator"):
        await asyncio.wait_for(_settle(tasks), 2)
    assert refused - queue.refusals <= 2  # at most the try under way and the last one
    assert queue.taken == []
    assert "1 messages of attempts run ahead could not be sent" in caplog.text
