"""``Home``: what a sticky message's copy coming back to its adapter means (pure bookkeeping)."""

from __future__ import annotations

from flowcraft.sqs._delivery import LocalDelivery
from flowcraft.sqs._sticky import Home


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _local(message_id: str) -> LocalDelivery:
    return LocalDelivery(message_id=message_id, body=b"b", settler=None)  # type: ignore[arg-type]


def test_a_copy_of_an_acked_local_delivery_is_done_until_forgotten() -> None:
    clock = _Clock()
    home = Home(limit=4, remember=10.0, clock=clock)
    local = _local("m")
    home.add(local)
    assert home.take(5) == [local]
    home.finished(local)
    assert (len(home), home.holds("m")) == (0, False)
    assert home.arrived("m") == ("done", None)
    clock.now += 10.5
    assert home.arrived("m") == ("deliver", None)  # forgotten: an ordinary delivery


def test_a_copy_joins_a_local_delivery_that_is_out_and_replaces_one_not_taken() -> None:
    home = Home(limit=4, remember=10.0)
    out, ready = _local("out"), _local("ready")
    home.add(out)
    home.add(ready)
    assert home.take(1) == [out]
    assert home.arrived("out") == ("join", out)
    assert home.arrived("ready") == ("deliver", ready)
    assert home.take(5) == []  # the copy took its place
    assert not home.holds("ready")
    assert home.arrived("unknown") == ("deliver", None)


def test_a_nacked_local_delivery_is_ready_again_counted_unless_dropped() -> None:
    home = Home(limit=4, remember=10.0)
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
    home = Home(limit=2, remember=1_000.0, clock=clock)
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
