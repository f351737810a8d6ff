"""What a repeated enqueue of a held idempotency key sends (``_queue.repeat_delay``)."""

from __future__ import annotations

import pytest
from flowcraft.aws_world._queue import STALE_CLAIM, Held, repeat_delay


def test_a_sent_claim_is_not_sent_again() -> None:
    assert repeat_delay(Held("m", sent=True, age=1.0), ours=False) is None
    assert repeat_delay(Held("m", sent=True, age=STALE_CLAIM * 5), ours=False) is None


def test_this_world_s_unsent_claim_is_sent_at_once() -> None:
    assert repeat_delay(Held("m", sent=False, age=0.0), ours=True) == 0.0


def test_a_stale_unsent_claim_is_sent_at_once() -> None:
    assert repeat_delay(Held("m", sent=False, age=STALE_CLAIM + 0.5), ours=False) == 0.0


@pytest.mark.parametrize("age", [0.0, 10.0, STALE_CLAIM - 1.0, STALE_CLAIM])
def test_another_sender_s_young_claim_gets_a_copy_due_when_it_goes_stale(age: float) -> None:
    """The sender may have died after its claim: the copy is due once the claim is stale."""
    later = repeat_delay(Held("m", sent=False, age=age), ours=False)
    assert later is not None
    assert later > 0
    assert age + later > STALE_CLAIM
