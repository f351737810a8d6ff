"""The queue: at-least-once, dedup by idempotency key alone, delays, redelivery, recovery."""

from __future__ import annotations

import asyncio
import time

from flowcraft.core.testing.world_memory import WorldFactory
from flowcraft.core.testing.world_suite._support import ev, eventually, new_run
from flowcraft.core.world import WORKFLOW_QUEUE_PREFIX, QueueMessage, Redeliver, World


class Recorder:
    """A handler that records deliveries; ``answers`` scripts its replies per attempt."""

    def __init__(self, answers: dict[int, str | float] | None = None) -> None:
        self.deliveries: list[tuple[QueueMessage, int, str, float]] = []
        self.answers = answers or {}

    async def __call__(
        self, message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        """Record the delivery; answer as scripted."""
        self.deliveries.append((message, attempt, message_id, time.monotonic()))
        answer = self.answers.get(attempt)
        if answer == "raise":
            raise RuntimeError("handler failed (on purpose)")
        if isinstance(answer, float):
            return Redeliver(delay_seconds=answer)
        return None

    def bodies(self) -> list[QueueMessage]:
        """The messages delivered, in order."""
        return [message for message, *_ in self.deliveries]


async def test_a_message_reaches_the_handler_of_its_prefix(world: World) -> None:
    recorder, other = Recorder(), Recorder()
    world.register_handler("suite_a_", recorder)
    world.register_handler("suite_b_", other)
    message_id = await world.queue("suite_a_1", {"n": 1, "s": "nul\x00"})
    await eventually(lambda: len(recorder.deliveries) == 1, "delivery")
    assert recorder.deliveries[0][:3] == ({"n": 1, "s": "nul\x00"}, 1, message_id)
    assert other.deliveries == []


async def test_a_message_waits_for_a_handler(world: World) -> None:
    await world.queue("suite_late_1", {"n": 1})
    recorder = Recorder()
    world.register_handler("suite_late_", recorder)
    await eventually(lambda: len(recorder.deliveries) == 1, "delivery after registration")


async def test_repeats_of_an_idempotency_key_are_dropped_whatever_their_payload(
    world: World,
) -> None:
    recorder = Recorder()
    world.register_handler("suite_dedup_", recorder)
    first = await world.queue("suite_dedup_1", {"requestedAt": "t1"}, idempotency_key="step-1")
    second = await world.queue("suite_dedup_1", {"requestedAt": "t2"}, idempotency_key="step-1")
    assert second == first
    await world.queue("suite_dedup_1", {"marker": True})
    await eventually(lambda: {"marker": True} in recorder.bodies(), "the marker")
    await eventually(lambda: len(recorder.deliveries) >= 2, "both messages")
    assert sorted(map(str, recorder.bodies())) == sorted(
        map(str, [{"requestedAt": "t1"}, {"marker": True}])
    )


async def test_a_delayed_message_comes_after_undelayed_ones_and_never_early(world: World) -> None:
    recorder = Recorder()
    world.register_handler("suite_delay_", recorder)
    queued_at = time.monotonic()
    await world.queue("suite_delay_1", {"late": True}, delay_seconds=0.5)
    await world.queue("suite_delay_1", {"late": False})
    await eventually(lambda: len(recorder.deliveries) == 2, "both deliveries")
    assert [m["late"] for m in recorder.bodies()] == [False, True]
    assert recorder.deliveries[1][3] - queued_at >= 0.5


async def test_a_handler_that_raises_gets_the_message_again(world: World) -> None:
    recorder = Recorder({1: "raise", 2: "raise"})
    world.register_handler("suite_retry_", recorder)
    message_id = await world.queue("suite_retry_1", {"n": 1})
    await eventually(lambda: len(recorder.deliveries) == 3, "two redeliveries")
    assert [(a, i) for _, a, i, _ in recorder.deliveries] == [
        (1, message_id),
        (2, message_id),
        (3, message_id),
    ]


async def test_a_handler_can_ask_for_redelivery_after_a_delay(world: World) -> None:
    recorder = Recorder({1: 0.3})
    world.register_handler("suite_again_", recorder)
    await world.queue("suite_again_1", {"n": 1})
    await eventually(lambda: len(recorder.deliveries) == 2, "the asked-for redelivery")
    (_, first, id1, at1), (_, second, id2, at2) = recorder.deliveries
    assert (first, second, id1) == (1, 2, id2)
    assert at2 - at1 >= 0.3
    await asyncio.sleep(0.2)
    assert len(recorder.deliveries) == 2, "an acknowledged message came again"


async def test_start_re_enqueues_runs_left_pending_or_running(
    world_factory: WorldFactory, world: World
) -> None:
    pending = await new_run(world, started=False)
    running = await new_run(world)
    done = await new_run(world)
    await world.events_create(done.run_id, ev("run_completed", data={"output": b""}))
    await world.aclose()  # the crash: whatever it had queued is gone from its consumers
    reopened = await world_factory.reopen(world)
    recorder = Recorder()
    reopened.register_handler(WORKFLOW_QUEUE_PREFIX, recorder)
    async with reopened:
        wanted = {pending.run_id, running.run_id}
        await eventually(
            lambda: wanted <= {m.get("runId") for m in recorder.bodies()}, "recovery messages"
        )
        await asyncio.sleep(0.1)
        assert done.run_id not in {m.get("runId") for m in recorder.bodies()}
