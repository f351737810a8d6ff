"""Completions from other threads reach the event loop in order, one wake-up per batch."""

from __future__ import annotations

import asyncio
import threading

from flowcraft.kafka._relay import Relay


async def test_posts_while_the_loop_is_busy_run_in_order_after_one_wakeup() -> None:
    relay = Relay(asyncio.get_running_loop())
    seen: list[int] = []

    def post_all() -> None:
        for i in range(50):
            relay.post(seen.append, i)

    poster = threading.Thread(target=post_all)
    poster.start()
    poster.join()  # the loop did not run meanwhile: every post is queued behind one wake-up
    assert seen == []
    await asyncio.sleep(0)
    assert seen == list(range(50))
    assert relay.wakeups == 1


async def test_a_post_after_a_drain_wakes_the_loop_again() -> None:
    relay = Relay(asyncio.get_running_loop())
    seen: list[object] = []
    for value in ("a", "b"):
        threading.Thread(
            target=relay.forward, args=(value, lambda v, tag: seen.append((v, tag)), 1)
        ).start()
        await asyncio.sleep(0.05)
    assert seen == [("a", 1), ("b", 1)]
    assert relay.wakeups == 2


async def test_a_failing_call_leaves_the_rest_to_the_next_turn() -> None:
    loop = asyncio.get_running_loop()
    relay = Relay(loop)
    seen: list[int] = []
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context.get("exception")))
    try:

        def fail() -> None:
            raise ZeroDivisionError

        relay.post(fail)
        relay.post(seen.append, 2)
        await asyncio.sleep(0.01)
    finally:
        loop.set_exception_handler(None)
    assert seen == [2]
    assert [type(e) for e in errors] == [ZeroDivisionError]


def test_posts_to_a_closed_loop_neither_run_nor_pile_up() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    relay = Relay(loop)
    seen: list[int] = []
    for i in range(3):
        relay.post(seen.append, i)
    assert seen == []
    assert relay.wakeups == 3  # asked each time (nothing was left pending to wake up for)
