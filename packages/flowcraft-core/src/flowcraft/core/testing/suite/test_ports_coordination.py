"""The coordination store's contract (``ports.CoordinationStore``), for backends that have one.

Every test needs the ``coordination`` capability: a backend without the (optional) port runs
them as strict expected failures, and one that declares it must pass them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
from flowcraft.core.ports import CoordinationStore
from flowcraft.core.testing.harness import Harness

#: Capabilities every test of this module needs (the plugin marks them; a module-level
#: ``pytestmark`` would leak through the suite's star import onto every other test).
FLOWCRAFT_REQUIRES = ("coordination",)


@pytest.fixture
async def coordination(harness: Harness) -> AsyncIterator[CoordinationStore]:
    """The coordination store of a fresh namespace."""
    async with harness.backend() as backend:
        store = backend.coordination
        if store is None:
            assert "coordination" not in harness.capabilities, "declares it but has no store"
            # Declared absent: the test is a strict xfail, which pytest honours for a failure
            # of the test's call, not of its fixtures' setup; so each call fails instead.
            store = cast(CoordinationStore, _Absent())
        yield store


class _Absent:
    """The coordination store of a backend without one: every call fails."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the backend has no coordination store (called {name})")


async def test_set_add_reports_new_members_only(coordination: CoordinationStore) -> None:
    assert await coordination.set_add("run:r1:join:n", "a") is True
    assert await coordination.set_add("run:r1:join:n", "a") is False
    assert await coordination.set_add("run:r1:join:n", "b") is True
    assert await coordination.set_add("run:r1:join:other", "a") is True


async def test_set_add_has_one_winner_under_contention(coordination: CoordinationStore) -> None:
    added = await asyncio.gather(*(coordination.set_add("run:r:s", "m") for _ in range(40)))
    assert added.count(True) == 1


async def test_compare_and_set(coordination: CoordinationStore) -> None:
    assert await coordination.get("run:r:v") is None
    assert await coordination.compare_and_set("run:r:v", None, "running") is True
    assert await coordination.compare_and_set("run:r:v", None, "other") is False
    assert await coordination.compare_and_set("run:r:v", "pending", "x") is False
    assert await coordination.get("run:r:v") == "running"
    assert await coordination.compare_and_set("run:r:v", "running", "completed") is True
    assert await coordination.get("run:r:v") == "completed"


async def test_compare_and_set_has_one_winner(coordination: CoordinationStore) -> None:
    tries = [coordination.compare_and_set("run:r:t", None, f"w{i}") for i in range(30)]
    results = await asyncio.gather(*tries)
    assert results.count(True) == 1
    assert await coordination.get("run:r:t") == f"w{results.index(True)}"


async def test_values_and_sets_with_a_ttl_expire(coordination: CoordinationStore) -> None:
    assert await coordination.compare_and_set("run:r:short", None, "x", ttl=0.3)
    assert await coordination.set_add("run:r:members", "m", ttl=0.3)
    assert await coordination.compare_and_set("run:r:kept", None, "y")
    await asyncio.sleep(0.6)
    assert await coordination.get("run:r:short") is None
    assert await coordination.set_add("run:r:members", "m") is True  # the old set is gone
    assert await coordination.get("run:r:kept") == "y"


async def test_fencing_tokens_strictly_increase(coordination: CoordinationStore) -> None:
    tokens: list[int] = []
    for _ in range(5):
        token = await coordination.acquire_lock("run:r:lock", ttl=10)
        assert token is not None
        assert await coordination.acquire_lock("run:r:lock", ttl=10) is None
        tokens.append(token)
        assert await coordination.release_lock("run:r:lock", token) is True
    assert tokens == sorted(set(tokens))


async def test_an_expired_lock_is_taken_with_a_higher_token(
    coordination: CoordinationStore,
) -> None:
    first = await coordination.acquire_lock("l", ttl=0.2)
    assert first is not None
    await asyncio.sleep(0.4)
    second = await coordination.acquire_lock("l", ttl=10)
    assert second is not None
    assert second > first
    assert await coordination.release_lock("l", first) is False  # the stale holder is refused
    assert await coordination.acquire_lock("l", ttl=10) is None  # still held by `second`


async def test_release_with_a_wrong_token_is_refused(coordination: CoordinationStore) -> None:
    token = await coordination.acquire_lock("l2", ttl=10)
    assert token is not None
    assert await coordination.release_lock("l2", token + 1) is False
    assert await coordination.acquire_lock("l2", ttl=10) is None
    assert await coordination.release_lock("l2", token) is True
    assert await coordination.acquire_lock("l2", ttl=10) is not None


async def test_one_lock_holder_under_contention(coordination: CoordinationStore) -> None:
    tokens = await asyncio.gather(*(coordination.acquire_lock("c", ttl=10) for _ in range(40)))
    assert sum(token is not None for token in tokens) == 1


async def test_expire_run_expires_the_keys_of_that_run_only(
    coordination: CoordinationStore,
) -> None:
    await coordination.set_add("run:r1:join:a", "x")
    await coordination.compare_and_set("run:r1:status", None, "done")
    await coordination.set_add("run:r10:join:a", "x")  # another run, whose id starts alike
    await coordination.compare_and_set("global", None, "g")
    await coordination.expire_run("r1", ttl=0.3)
    await asyncio.sleep(0.6)
    assert await coordination.get("run:r1:status") is None
    assert await coordination.set_add("run:r1:join:a", "x") is True
    assert await coordination.set_add("run:r10:join:a", "x") is False
    assert await coordination.get("global") == "g"
