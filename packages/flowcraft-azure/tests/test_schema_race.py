"""``if_not_exists``: a create that lost the race to another process asks again and finds it."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from flowcraft.azure._schema import if_not_exists


async def test_a_lost_race_asks_again() -> None:
    calls: list[int] = []

    async def create() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ResourceExistsError("created by another process in between")
        return "proxy"

    assert await if_not_exists(create) == "proxy"
    assert len(calls) == 2


async def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    async def create() -> str:
        calls.append(1)
        raise ResourceNotFoundError("no such account")

    with pytest.raises(ResourceNotFoundError):
        await if_not_exists(create)
    assert len(calls) == 1
