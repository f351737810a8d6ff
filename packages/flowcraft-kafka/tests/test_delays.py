"""Delay tiers: a hold never longer than the delay it stands for."""

import pytest
from flowcraft.kafka._delays import TIERS, release_at, tier_for


@pytest.mark.parametrize("delay", [0.001, 0.5, 1.0, 4.9, 5.0, 29.0, 31.0, 599.0, 86_400.0])
def test_the_chosen_tier_holds_no_longer_than_the_delay(delay: float) -> None:
    tier = tier_for(delay)
    assert TIERS[tier] <= delay
    assert tier == len(TIERS) - 1 or TIERS[tier + 1] > delay


def test_release_is_never_after_the_due_time_nor_before_the_hold() -> None:
    assert release_at(0, produced_ms=1_000, due_ms=1_400) == 1_400
    assert release_at(2, produced_ms=1_000, due_ms=9_000) == 6_000
    assert release_at(2, produced_ms=1_000, due_ms=5_999) == 5_999
