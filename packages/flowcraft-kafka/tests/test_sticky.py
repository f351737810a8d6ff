"""Sticky routing: the owner's partitions, the preference and its bounds."""

from __future__ import annotations

import pytest
from flowcraft.kafka._sticky import StickyRoutes

A, B = object(), object()


def test_a_sticky_message_goes_to_an_owned_partition_and_waits_for_its_owner() -> None:
    routes = StickyRoutes(timeout=2.0, limit=8)
    partition = routes.route(b"m1", A, [7, 3, 5], now=0.0)
    assert partition in (3, 5, 7)
    assert routes.route(b"m1", A, [5, 3, 7], now=0.0) == partition  # by key, not list order
    assert routes.withheld(b"m1", B, now=1.0)  # another queue object leaves it
    assert not routes.withheld(b"m1", A, now=1.0)  # its owner takes it...
    assert not routes.withheld(b"m1", B, now=1.0)  # ...and it is forgotten
    assert len(routes) == 0


def test_the_preference_runs_out() -> None:
    routes = StickyRoutes(timeout=2.0, limit=8)
    routes.route(b"m1", A, [0], now=0.0)
    assert routes.withheld(b"m1", B, now=1.9)
    assert not routes.withheld(b"m1", B, now=2.0)


def test_an_owner_that_stops_receiving_gives_its_messages_to_anyone() -> None:
    routes = StickyRoutes(timeout=2.0, limit=8)
    routes.route(b"m1", A, [0], now=0.0)
    routes.route(b"m2", B, [0], now=0.0)
    routes.drop(A)
    assert not routes.withheld(b"m1", B, now=0.1)
    assert routes.withheld(b"m2", A, now=0.1)


def test_no_preference_without_owned_partitions_or_beyond_the_limit() -> None:
    routes = StickyRoutes(timeout=2.0, limit=2)
    assert routes.route(b"m0", A, [], now=0.0) is None  # not assigned yet: by key
    assert routes.route(b"m1", A, [0], now=0.0) == 0
    assert routes.route(b"m2", A, [0], now=0.0) == 0
    assert routes.route(b"m3", A, [0], now=0.0) is None  # two on their way already
    assert not routes.withheld(b"m3", B, now=0.0)
    assert routes.route(b"m4", A, [0], now=5.0) == 0  # the first two ran out


def test_messages_never_routed_are_anyones() -> None:
    assert not StickyRoutes(timeout=1.0, limit=1).withheld(b"x", A, now=0.0)


@pytest.mark.parametrize(("timeout", "limit"), [(0.0, 1), (1.0, 0)])
def test_bounds_must_be_positive(timeout: float, limit: int) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        StickyRoutes(timeout=timeout, limit=limit)
