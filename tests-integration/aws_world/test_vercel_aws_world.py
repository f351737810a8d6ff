"""vercel-workflow programs end to end on AwsWorld (moto), through VercelBridge.

vercel-workflow's world selector (``set_world``) holds the bridge over an AwsWorld; the
runtime's own start, queue handler, replay, steps, retries, sleeps, hook resumes and
streams (chunks in S3, order and EOF in DynamoDB) do the rest.
One pass delivers every SQS message to the runtime twice, concurrently; another cuts every
connection to the services for three seconds mid-run (a TCP proxy in front of moto).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.testing.faults import TcpProxy
from flowcraft.core.world import (
    Event,
    EventType,
    HookReceivedData,
    HookStatus,
    Pagination,
    QueueHandler,
    QueueMessage,
    Redeliver,
    RunStatus,
)
from flowcraft.core.world.vercel import VercelBridge
from vercel import workflow as vw
from vercel.workflow._internal import world as vercel_world

# vercel-workflow re-imports a workflow's module by name in its sandbox: a top-level module.
sys.path.insert(0, str(Path(__file__).parents[1] / "world"))
sys.path.insert(0, str(Path(__file__).parent))
import vercel_checks as checks
import vercel_programs as programs

pytestmark = pytest.mark.timeout(120)

_T = TypeVar("_T")


class _EveryMessageTwice(AwsWorld):
    """AwsWorld whose consumers run every delivery twice, concurrently."""

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        async def twice(
            message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
        ) -> Redeliver | None:
            def once() -> Awaitable[Redeliver | None]:
                return handler(
                    message, queue_name=queue_name, message_id=message_id, attempt=attempt
                )

            outcomes = await asyncio.gather(once(), once(), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            return None

        super().register_handler(queue_prefix, twice)


@contextlib.asynccontextmanager
async def _selected(
    endpoint_url: str, world_class: type[AwsWorld] = AwsWorld
) -> AsyncIterator[VercelBridge]:
    """A fresh AwsWorld behind the bridge in vercel-workflow's selector; dropped afterwards."""
    config = AwsWorldConfig.for_prefix(
        f"vw-{uuid.uuid4().hex[:10]}",
        endpoint_url=endpoint_url,
        poll_wait_seconds=1,
        visibility_timeout=5,
        stream_poll_max=0.05,
    )
    world = world_class(config)
    await world.ensure_infrastructure()
    bridge = VercelBridge(world, deployment_id="dpl_test")
    previous = vercel_world.the_world
    vercel_world.set_world(bridge)
    try:
        programs.serve()
        async with bridge:
            yield bridge
    finally:
        vercel_world.set_world(previous)
        cleaner = AwsWorld(config)
        await cleaner.drop_infrastructure()
        await cleaner.aclose()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _events(bridge: VercelBridge, run_id: str) -> list[Event]:
    page = await bridge.world.events_list(run_id, pagination=Pagination(limit=1000))
    assert not page.has_more
    return page.data


async def test_a_step_a_sleep_and_a_hook_run_to_completion(aws_endpoint_url: str) -> None:
    token = f"approval-{uuid.uuid4().hex}"
    async with _selected(aws_endpoint_url) as bridge:
        run = await vw.start(programs.step_sleep_hook, 41, token)

        async def hook_exists() -> bool:
            try:
                await vw.get_hook_by_token(token)
            except vw.HookNotFoundError:
                return False
            return True

        await _eventually(hook_exists, "the run to create its hook")
        assert await run.status() == "running"
        await programs.Approval(approved=True, note="ship it").resume(token)
        result = await asyncio.wait_for(run.return_value(), 60)

        assert result == {"total": 42, "approved": True, "note": "ship it"}
        assert (await bridge.world.runs_get(run.run_id)).status == RunStatus.COMPLETED
        events = await _events(bridge, run.run_id)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        assert [event.event_type for event in events] == [
            EventType.RUN_CREATED,
            EventType.RUN_STARTED,
            EventType.STEP_CREATED,
            EventType.STEP_STARTED,
            EventType.STEP_COMPLETED,
            EventType.WAIT_CREATED,
            EventType.WAIT_COMPLETED,
            EventType.HOOK_CREATED,
            EventType.HOOK_RECEIVED,
            EventType.RUN_COMPLETED,
        ]
        wait_created, wait_completed = events[5], events[6]
        assert (wait_completed.created_at - wait_created.created_at).total_seconds() >= 1.0
        received = events[8]
        assert isinstance(received.data, HookReceivedData)
        assert b"ship it" in received.data.payload
        hook = await bridge.world.hooks_get(run.run_id, events[7].correlation_id or "")
        assert (hook.token, hook.received, hook.status) == (token, 1, HookStatus.DISPOSED)
        with pytest.raises(vw.HookNotFoundError):
            await vw.get_hook_by_token(token)


@pytest.mark.parametrize(
    "world_class", [AwsWorld, _EveryMessageTwice], ids=["once", "every-message-twice"]
)
async def test_twenty_steps_each_committed_once(
    aws_endpoint_url: str, world_class: type[AwsWorld]
) -> None:
    async with _selected(aws_endpoint_url, world_class) as bridge:
        run = await vw.start(programs.twenty_steps, 0)
        result = await asyncio.wait_for(run.return_value(), 90)

        assert result == list(range(1, programs.STEP_COUNT + 1))
        events = await _events(bridge, run.run_id)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        completed = Counter(
            event.correlation_id for event in events if event.event_type == EventType.STEP_COMPLETED
        )
        created = [e.correlation_id for e in events if e.event_type == EventType.STEP_CREATED]
        assert len(created) == programs.STEP_COUNT
        assert completed == Counter(dict.fromkeys(created, 1))
        assert [e.event_type for e in events].count(EventType.RUN_COMPLETED) == 1
        steps = await bridge.world.steps_list(run.run_id, pagination=Pagination(limit=100))
        assert {step.status.value for step in steps.data} == {"completed"}


async def test_a_step_retried_twice_then_completed_waits_its_retry_after(
    aws_endpoint_url: str,
) -> None:
    async with _selected(aws_endpoint_url) as bridge:
        await checks.retried_until_it_succeeds(bridge)


async def test_a_retried_step_with_every_message_twice_completes_once(
    aws_endpoint_url: str,
) -> None:
    async with _selected(aws_endpoint_url, _EveryMessageTwice) as bridge:
        await checks.retried_with_every_message_twice(bridge)


async def test_a_step_out_of_retries_fails_the_run(aws_endpoint_url: str) -> None:
    async with _selected(aws_endpoint_url) as bridge:
        await checks.fails_once_retries_are_used(bridge)


async def test_a_fatal_error_fails_the_run_without_retry(aws_endpoint_url: str) -> None:
    async with _selected(aws_endpoint_url) as bridge:
        await checks.fails_at_a_fatal_error(bridge)


async def test_two_steps_stream_chunks_read_live_in_order(aws_endpoint_url: str) -> None:
    async with _selected(aws_endpoint_url) as bridge:
        await checks.streams_every_chunk_in_order(bridge)


class _ProxyThread:
    """Core's ``TcpProxy`` on an event loop of its own thread.

    Not in the test's loop: the World's boto3 calls run in threads while its loop runs the
    workflow; a proxy in that loop relays bytes only when the loop gets to it, so a busy or
    blocked loop looked to boto3 like a hung server (read timeouts of 40 s per attempt).
    On exit the proxy closes, its loop lets every task it still has finish (cancelling what
    is left after 2 s) and the aborted transports close before the loop does (nothing left
    for the garbage collector to warn of).
    """

    def __init__(self, target: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.proxy = TcpProxy.to(target)

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.run_forever()
        # The proxy's close ended its connections' tasks; what may remain is an accept that
        # raced the close (its task aborts at once) or a task of its own that asyncio started.
        # Let each finish, cancel what does not within 2 s, and repeat until none is left:
        # a transport aborted is closed only once the loop runs its callbacks.
        for _ in range(5):
            leftovers = asyncio.all_tasks(loop)
            if not leftovers:
                break
            _, running = loop.run_until_complete(asyncio.wait(leftovers, timeout=2.0))
            for task in running:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*running, return_exceptions=True))
        loop.run_until_complete(asyncio.sleep(0.05))  # aborted transports finish closing
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _call(self, work: Coroutine[Any, Any, _T]) -> _T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def __aenter__(self) -> _ProxyThread:
        self._thread.start()
        await self._call(self.proxy.start())
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            await self._call(self.proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        assert not self._thread.is_alive(), "the proxy's loop did not stop"

    async def cut(self) -> int:
        """Abort every open connection and refuse new ones; how many were open."""
        return await self._call(self.proxy.cut())

    async def resume(self) -> None:
        """Accept connections again (same port)."""
        await self._call(self.proxy.resume())


async def test_every_connection_cut_for_three_seconds_mid_run_loses_nothing(
    aws_endpoint_url: str,
) -> None:
    """Every connection to moto aborted and refused for 3 s while twenty steps run."""
    async with _ProxyThread(aws_endpoint_url) as relay, _selected(relay.proxy.url) as bridge:
        run = await vw.start(programs.twenty_steps, 0)

        async def some_steps_done() -> bool:
            steps = await bridge.world.steps_list(run.run_id, pagination=Pagination(limit=100))
            return sum(step.status.value == "completed" for step in steps.data) >= 5

        await _eventually(some_steps_done, "five steps before the cut")
        assert await relay.cut(), "no connection was open at the cut"
        await asyncio.sleep(3.0)
        await relay.resume()
        result = await asyncio.wait_for(run.return_value(), 75)

        assert result == list(range(1, programs.STEP_COUNT + 1))
        events = await _events(bridge, run.run_id)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        created = [e.correlation_id for e in events if e.event_type == EventType.STEP_CREATED]
        completed = Counter(
            e.correlation_id for e in events if e.event_type == EventType.STEP_COMPLETED
        )
        assert len(created) == programs.STEP_COUNT
        assert completed == Counter(dict.fromkeys(created, 1))
