"""The event log: dense and ordered under 50 concurrent writers, pages and cursors."""

from __future__ import annotations

import asyncio

import pytest
from flowcraft.core.testing.world_suite._support import all_events, ev, new_run, within
from flowcraft.core.world import Pagination, SortOrder, World, WorldRequestError

WRITERS = 50


async def test_fifty_concurrent_writers_leave_a_dense_ordered_log(world: World) -> None:
    run = await new_run(world)
    writing = True
    holes: list[list[int]] = []

    async def write(index: int) -> int:
        result = await world.events_create(
            run.run_id, ev("wait_created", f"w{index}", {"resume_at": "2030-01-01T00:00:00Z"})
        )
        assert result.event is not None
        return result.event.sequence

    async def read() -> int:
        reads = 0
        while writing or reads == 0:
            sequences = [e.sequence for e in await all_events(world, run.run_id)]
            if sequences != list(range(1, len(sequences) + 1)):
                holes.append(sequences)
            reads += 1
            await asyncio.sleep(0)
        return reads

    readers = [asyncio.ensure_future(read()) for _ in range(3)]
    sequences = await within(asyncio.gather(*(write(i) for i in range(WRITERS))), "50 writes")
    writing = False
    await within(asyncio.gather(*readers), "the readers")
    assert not holes, f"a reader saw the log with a hole or out of order: {holes[0]}"
    assert sorted(sequences) == list(range(3, 3 + WRITERS))
    events = await all_events(world, run.run_id)
    assert [e.sequence for e in events] == list(range(1, WRITERS + 3))
    assert sorted(e.correlation_id for e in events[2:]) == sorted(f"w{i}" for i in range(WRITERS))  # type: ignore[type-var]
    ids = [e.event_id for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


async def _log_of(world: World, count: int) -> str:
    run = await new_run(world)
    for index in range(count - 2):
        await world.events_create(
            run.run_id, ev("hook_created", f"h{index}", {"token": f"{run.run_id}-{index}"})
        )
    return run.run_id


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_pages_read_limit_plus_one_and_cover_the_log_once(
    world: World, order: SortOrder
) -> None:
    run_id = await _log_of(world, 10)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await world.events_list(
            run_id, pagination=Pagination(limit=5, cursor=cursor, sort_order=order)
        )
        seen += [e.sequence for e in page.data]
        pages += 1
        cursor = page.cursor
        if not page.has_more:
            break
    assert pages == 2, "exactly 10 events in pages of 5: the second page has no more"
    assert seen == (list(range(1, 11)) if order == "asc" else list(range(10, 0, -1)))


async def test_a_cursor_stays_valid_as_the_log_grows(world: World) -> None:
    run_id = await _log_of(world, 4)
    page = await world.events_list(run_id)
    assert not page.has_more
    assert page.cursor is not None
    empty = await world.events_list(run_id, pagination=Pagination(cursor=page.cursor))
    assert (empty.data, empty.has_more) == ([], False)
    await world.events_create(run_id, ev("hook_created", "late", {"token": f"{run_id}-late"}))
    newer = await world.events_list(run_id, pagination=Pagination(cursor=page.cursor))
    assert [e.sequence for e in newer.data] == [5]
    again = await world.events_list(run_id, pagination=Pagination(cursor=page.cursor))
    assert [e.event_id for e in again.data] == [e.event_id for e in newer.data]


async def test_an_unknown_run_lists_an_empty_page(world: World) -> None:
    page = await world.events_list("wrun_nobody")
    assert (page.data, page.has_more) == ([], False)


async def test_a_bad_cursor_is_400(world: World) -> None:
    run_id = await _log_of(world, 3)
    asc = await world.events_list(run_id, pagination=Pagination(limit=1))
    for cursor, order in (("garbage!", "asc"), (asc.cursor, "desc")):
        with pytest.raises(WorldRequestError) as caught:
            await world.events_list(run_id, pagination=Pagination(cursor=cursor, sort_order=order))  # type: ignore[arg-type]
        assert caught.value.status == 400


async def test_a_page_holds_at_most_1000(world: World) -> None:
    with pytest.raises(ValueError, match="1000"):
        Pagination(limit=1001)
    run_id = await _log_of(world, 3)
    page = await world.events_list(run_id, pagination=Pagination(limit=1000))
    assert len(page.data) == 3
