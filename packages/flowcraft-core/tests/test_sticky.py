"""``flowcraft.core.sticky``: local deliveries, what a returning copy means, the delay option."""

from __future__ import annotations

import math

import pytest
from flowcraft.core.sticky import (
    Home,
    LocalDelivery,
    sticky_delay_option,
    sticky_delay_seconds,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Settler:
    """Records what the local deliveries ask of their adapter."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.fail = fail

    async def local_ack(self, delivery: LocalDelivery[str]) -> None:
        self._record("ack", delivery, None)

    async def local_nack(self, delivery: LocalDelivery[str], seconds: float) -> None:
        self._record("nack", delivery, seconds)

    async def local_extend(self, delivery: LocalDelivery[str], seconds: float) -> None:
        self._record("extend", delivery, seconds)

    async def local_dead(self, delivery: LocalDelivery[str], reason: str) -> None:
        self._record("dead", delivery, reason)

    def _record(self, what: str, delivery: LocalDelivery[str], arg: object) -> None:
        self.calls.append((what, delivery.message_id, arg))
        if self.fail:
            raise RuntimeError(what)


def _local(message_id: str, settler: _Settler | None = None) -> LocalDelivery[str]:
    return LocalDelivery(message_id=message_id, body=b"b", settler=settler or _Settler())


def test_a_copy_of_an_acked_local_delivery_is_done_until_forgotten() -> None:
    clock = _Clock()
    home: Home[str] = Home(limit=4, remember=10.0, clock=clock)
    local = _local("m")
    home.add(local)
    assert home.take(5) == [local]
    home.finished(local)
    assert (len(home), home.holds("m")) == (0, False)
    assert home.arrived("m") == ("done", None)
    clock.now += 10.5
    assert home.arrived("m") == ("deliver", None)  # forgotten: an ordinary delivery


def test_a_copy_joins_a_local_delivery_that_is_out_and_replaces_one_not_taken() -> None:
    home: Home[str] = Home(limit=4, remember=10.0)
    out = _local("out")
    ready = LocalDelivery(message_id="ready", body=b"b", settler=_Settler(), sent=("id", "pop"))
    home.add(out)
    home.add(ready)
    assert home.take(1) == [out]
    assert home.arrived("out") == ("join", out)
    assert home.arrived("ready") == ("deliver", ready)
    assert ready.sent is None  # released: the adapter no longer settles the copy as sent
    assert home.take(5) == []  # the copy took its place
    assert not home.holds("ready")
    assert home.arrived("unknown") == ("deliver", None)


def test_a_nacked_local_delivery_is_ready_again_counted_unless_dropped() -> None:
    home: Home[str] = Home(limit=4, remember=10.0)
    local, dropped = _local("a"), _local("b")
    for each in (local, dropped):
        home.add(each)
    home.take(2)
    local.state = dropped.state = "waiting"
    home.drop_ready()  # the consumer stops: its waiting deliveries go to their copies
    assert not home.again(dropped)
    assert not home.holds("a")
    again = _local("c")
    home.add(again)
    home.take(1)
    again.state = "waiting"
    assert home.again(again)
    assert (again.delivery_count, home.take(1)) == (2, [again])


def test_room_is_bounded_and_the_done_memory_too() -> None:
    clock = _Clock()
    home: Home[str] = Home(limit=2, remember=1_000.0, clock=clock)
    first, second = _local("1"), _local("2")
    home.add(first)
    home.add(second)
    assert (home.has_room, len(home)) == (False, 2)
    for each in home.take(2):
        home.finished(each)
    assert (home.has_room, len(home)) == (True, 0)
    for index in range(40):  # more than 16 x limit finished: the oldest are forgotten
        each = _local(f"x{index}")
        home.add(each)
        home.take(1)
        home.finished(each)
    assert home.arrived("1") == ("deliver", None)
    assert home.arrived("x39") == ("done", None)


async def test_a_local_delivery_is_settled_once_and_only_once_it_is_out() -> None:
    settler = _Settler()
    local = _local("m", settler)
    await local.ack()  # ready (not handed out): nothing to settle
    await local.extend(5.0)
    local.state = "out"
    await local.extend(5.0)
    await local.nack(2.0)
    await local.ack()  # settled already
    await local.dead_letter("late")
    assert settler.calls == [("extend", "m", 5.0), ("nack", "m", 2.0)]
    assert (local.state, local.delivery_count, local.body) == ("settled", 1, b"b")


async def test_a_settlement_that_raised_leaves_the_local_delivery_out() -> None:
    settler = _Settler(fail=True)
    local = _local("m", settler)
    local.state = "out"
    with pytest.raises(RuntimeError, match="dead"):
        await local.dead_letter("bad")
    assert local.state == "out"
    settler.fail = False
    await local.dead_letter("bad")
    assert (local.state, settler.calls[-1]) == ("settled", ("dead", "m", "bad"))


def test_home_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Home(limit=0, remember=1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        Home(limit=1, remember=0.0)


def test_the_sticky_delay_is_whole_seconds_within_bounds() -> None:
    assert sticky_delay_seconds(None) is None
    assert sticky_delay_seconds(0.2) == 1
    assert sticky_delay_seconds(12.5) == 13
    assert sticky_delay_seconds(50) == 50
    for bad in (0, -1, 50.5, math.nan, True, "3"):
        with pytest.raises(ValueError, match="sticky_delay"):
            sticky_delay_seconds(bad)  # type: ignore[arg-type]


def test_the_sticky_delay_option_of_a_backend_factory() -> None:
    assert sticky_delay_option("default", visibility_timeout=60) == 30
    assert sticky_delay_option("default", visibility_timeout=2) == 2
    assert sticky_delay_option("12.5", visibility_timeout=60) == 13
    assert sticky_delay_option(7, visibility_timeout=60) == 7
    for off in (None, "none", " OFF "):
        assert sticky_delay_option(off, visibility_timeout=60) is None
    for bad in ("soon", "0", "51"):
        with pytest.raises(ValueError, match="option sticky_delay"):
            sticky_delay_option(bad, visibility_timeout=60)
