"""``flowcraft.core.sticky``: local deliveries, what a returning copy means, the delay option."""

from __future__ import annotations

import asyncio
import math

import pytest
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.sticky import (
    Home,
    LocalDeliveries,
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


# ------------------------------------------------------------------ LocalDeliveries


class _Copy:
    """A durable copy as the adapter received it (a ``ports.Delivery``), recording its calls."""

    def __init__(self, message_id: str, calls: list[tuple[str, object]]) -> None:
        self.message_id, self.body, self.delivery_count = message_id, b"b", 1
        self.calls = calls
        self.extend_error: Exception | None = None

    async def ack(self) -> None:
        self.calls.append(("copy.ack", self.message_id))

    async def nack(self, delay: float = 0.0) -> None:
        self.calls.append(("copy.nack", delay))

    async def extend(self, seconds: float) -> None:
        self.calls.append(("copy.extend", seconds))
        if self.extend_error is not None:
            raise self.extend_error

    async def dead_letter(self, reason: str) -> None:
        self.calls.append(("copy.dead", reason))


class _Adapter:
    """The callables an adapter gives its ``LocalDeliveries``, recording what they are asked."""

    def __init__(self, *, dead_letter_queue: bool = True) -> None:
        self.calls: list[tuple[str, object]] = []
        self.closed = False
        self.dead_letter_queue = dead_letter_queue
        self.local: LocalDeliveries[_Copy] = LocalDeliveries(
            check_open=self.check_open,
            wake=lambda: self.calls.append(("wake", None)),
            stale=lambda exc: "stale" in str(exc),
            send_dead=self.send_dead,
            forget=lambda copy: self.calls.append(("forget", copy.message_id)),
            drop_sent=self.drop_sent,
            home=Home(limit=2, remember=60.0),
        )
        self.local.receiving()

    def check_open(self, what: str) -> None:
        if self.closed:
            raise TransientBackendError(f"{what}: closed")

    async def send_dead(self, delivery: LocalDelivery[_Copy], reason: str) -> bool:
        self.calls.append(("send_dead", reason))
        return self.dead_letter_queue

    async def drop_sent(self, message_id: str, sent: object) -> None:
        self.calls.append(("drop_sent", sent))

    def out(self, message_id: str, sent: object = None) -> LocalDelivery[_Copy]:
        """A local delivery of ``message_id`` handed to the consumer."""
        self.local.add(message_id, b"b", sent=sent)
        (local,) = self.local.home.take(1)
        self.calls.clear()
        return local


async def test_an_ack_deletes_the_joined_copy_or_the_copy_as_sent_and_finishes() -> None:
    adapter = _Adapter()
    joined, unjoined = adapter.out("j", sent="s1"), adapter.out("u", sent="s2")
    copy = _Copy("j", adapter.calls)
    assert adapter.local.arrived(copy) == "join"
    assert joined.copy is copy
    await joined.ack()
    await unjoined.ack()
    assert adapter.calls == [("copy.ack", "j"), ("drop_sent", "s2")]
    assert adapter.local.arrived(_Copy("u", adapter.calls)) == "done"
    assert (joined.state, len(adapter.local.home)) == ("settled", 0)


async def test_a_nack_comes_back_here_after_its_delay_unless_a_copy_replaced_it() -> None:
    adapter = _Adapter()
    local = adapter.out("m")
    await local.nack(0.01)
    assert local.state == "waiting"
    await asyncio.sleep(0.05)
    assert adapter.calls == [("wake", None)]
    assert adapter.local.home.take(1) == [local]
    assert local.delivery_count == 2
    await local.nack(10.0)
    timer = local.timer
    assert isinstance(timer, asyncio.TimerHandle)
    assert adapter.local.arrived(_Copy("m", adapter.calls)) == "deliver"  # it replaces it
    assert timer.cancelled()
    assert not adapter.local.home.holds("m")


async def test_a_nack_goes_through_the_joined_copy_or_to_the_copy_once_stopped() -> None:
    adapter = _Adapter()
    joined, other = adapter.out("j"), adapter.out("o")
    adapter.local.arrived(_Copy("j", adapter.calls))
    await joined.nack(3.0)
    adapter.local.stop()
    await other.nack(1.0)
    assert adapter.calls == [("copy.nack", 3.0)]
    assert (other.state, other.timer, len(adapter.local.home)) == ("settled", None, 0)
    assert not adapter.local.accepts


async def test_stopping_drops_waiting_local_deliveries_and_cancels_their_timers() -> None:
    adapter = _Adapter()
    local = adapter.out("m")
    await local.nack(10.0)
    timer = local.timer
    assert isinstance(timer, asyncio.TimerHandle)
    adapter.local.stop()
    assert timer.cancelled()
    assert not adapter.local.home.holds("m")
    adapter.local.receiving()  # a receive after the stop does not make it accept again
    assert not adapter.local.accepts


async def test_extend_goes_to_the_joined_copy_and_one_gone_stale_is_let_go() -> None:
    adapter = _Adapter()
    alone, joined = adapter.out("a"), adapter.out("j")
    copy = _Copy("j", adapter.calls)
    adapter.local.arrived(copy)
    await alone.extend(5.0)  # no copy: nothing to do
    await joined.extend(5.0)
    copy.extend_error = TransientBackendError("stale pop receipt")
    await joined.extend(6.0)
    assert joined.copy is None
    await joined.extend(7.0)
    assert adapter.calls == [
        ("copy.extend", 5.0), ("copy.extend", 6.0), ("forget", "j")
    ]  # fmt: skip
    other = _Copy("j", adapter.calls)
    adapter.local.arrived(other)
    other.extend_error = TransientBackendError("the server failed")
    with pytest.raises(TransientBackendError, match="server failed"):
        await joined.extend(8.0)
    assert joined.copy is other


async def test_a_dead_letter_goes_through_the_copy_or_is_sent_or_released() -> None:
    adapter = _Adapter()
    joined, sent = adapter.out("j"), adapter.out("s", sent="as-sent")
    adapter.local.arrived(_Copy("j", adapter.calls))
    await joined.dead_letter("bad")
    await sent.dead_letter("worse")
    assert adapter.calls == [("copy.dead", "bad"), ("send_dead", "worse"), ("drop_sent", "as-sent")]
    assert adapter.local.arrived(_Copy("s", adapter.calls)) == "done"
    without = _Adapter(dead_letter_queue=False)
    local = without.out("m", sent="as-sent")
    await local.dead_letter("bad")
    assert without.calls == [("send_dead", "bad")]  # not sent: released, its copy goes on
    assert without.local.arrived(_Copy("m", without.calls)) == "deliver"


async def test_local_deliveries_stay_here_only_while_receiving_with_room_once_per_id() -> None:
    adapter = _Adapter()
    adapter.local.add("a", b"1")
    adapter.local.add("a", b"2")  # one of that id is unsettled: the copy is the message
    adapter.local.add("b", b"3")
    adapter.local.add("c", b"4")  # the limit (2): not kept
    assert [local.body for local in adapter.local.home.take(5)] == [b"1", b"3"]
    assert adapter.calls == [("wake", None), ("wake", None)]
    assert not adapter.local.accepts
    idle: LocalDeliveries[_Copy] = _Adapter().local
    idle.stop()
    idle.add("x", b"5")
    assert idle.home.take(1) == []


async def test_settling_a_local_delivery_of_a_closed_adapter_raises_and_leaves_it_out() -> None:
    adapter = _Adapter()
    local = adapter.out("m")
    adapter.closed = True
    for settle in (local.ack(), local.nack(1.0), local.extend(1.0), local.dead_letter("x")):
        with pytest.raises(TransientBackendError, match="closed"):
            await settle
    assert (local.state, adapter.calls) == ("out", [])
