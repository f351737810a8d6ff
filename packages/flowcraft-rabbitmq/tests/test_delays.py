"""The delay ladder: rounding up, greedy hops, never early and only slightly late."""

import pytest
from flowcraft.rabbitmq._delays import LADDER_MS, delay_ms, plan_hop
from hypothesis import given
from hypothesis import strategies as st


def hops(total_ms: int) -> list[int]:
    rungs: list[int] = []
    rest = total_ms
    while rest > 0:
        rung, rest = plan_hop(rest)
        rungs.append(rung)
    return rungs


def test_delay_ms_rounds_up_and_clamps_negative_to_zero() -> None:
    assert delay_ms(0.0) == 0
    assert delay_ms(-3.0) == 0
    assert delay_ms(0.0001) == 1
    assert delay_ms(1.3) == 1300
    assert delay_ms(0.1 + 0.2) == 301  # 0.30000000000000004 s is never shortened


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_delay_ms_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        delay_ms(bad)


def test_plan_hop_takes_the_largest_rung_that_fits() -> None:
    assert plan_hop(1300) == (1000, 300)
    assert plan_hop(300) == (250, 50)
    assert plan_hop(50) == (50, 0)
    assert plan_hop(7_200_000) == (3_600_000, 3_600_000)


def test_plan_hop_rounds_a_short_rest_up_to_the_smallest_rung() -> None:
    assert plan_hop(1) == (LADDER_MS[0], 0)
    assert plan_hop(49) == (50, 0)


def test_plan_hop_rejects_no_delay() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_hop(0)


def test_ladder_is_strictly_increasing() -> None:
    assert list(LADDER_MS) == sorted(set(LADDER_MS))


@given(st.integers(min_value=1, max_value=10 * 3_600_000))
def test_hops_are_never_early_and_at_most_one_small_rung_late(total_ms: int) -> None:
    rungs = hops(total_ms)
    assert total_ms <= sum(rungs) < total_ms + LADDER_MS[0]
    assert all(rung in LADDER_MS for rung in rungs)


@given(st.integers(min_value=1, max_value=3_600_000))
def test_delays_up_to_an_hour_take_few_hops(total_ms: int) -> None:
    assert len(hops(total_ms)) <= 20
