"""Notices: a settled run's result carried by its notification (framing, codec, who sends)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flowcraft.core import (
    Client,
    Flow,
    MemoryJobQueue,
    MemoryRunStore,
    NodeContext,
    RunStatus,
    Worker,
    node,
)
from flowcraft.core._distributed.notices import notice_of, read_notice
from flowcraft.core._engine.compile import compile_blueprint
from flowcraft.core._engine.decide import new_run
from flowcraft.core._engine.records import header_of
from flowcraft.core.backends import notification_payload, read_notification_payload
from flowcraft.core.ports import ResultNotifier, StoredResult
from hypothesis import given
from hypothesis import strategies as st

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(run_id=st.text(min_size=1), value=_JSON)
def test_a_payload_gives_back_its_run_id_and_notice(run_id: str, value: object) -> None:
    notice = json.dumps(value)
    payload = notification_payload(run_id, notice, notice_limit=10**6)
    assert read_notification_payload(payload) == (run_id, notice)
    bare = notification_payload(run_id, None, notice_limit=10**6)
    assert read_notification_payload(bare) == (run_id, None)


def test_a_payload_over_a_limit_drops_the_notice_not_the_run() -> None:
    notice = json.dumps({"é": "x" * 20}, ensure_ascii=False)
    size = len(notice.encode())  # é takes two bytes
    for limits, carried in (
        ({"notice_limit": size}, notice),
        ({"notice_limit": size - 1}, None),
        ({"notice_limit": size, "payload_limit": size + 6}, notice),  # "run-1" and a separator
        ({"notice_limit": size, "payload_limit": size + 5}, None),
    ):
        payload = notification_payload("run-1", notice, **limits)
        assert read_notification_payload(payload) == ("run-1", carried), limits


def test_a_bare_run_id_reads_as_a_run_without_notice() -> None:
    assert read_notification_payload("run-1") == ("run-1", None)  # an older sender's payload


def test_only_a_settled_state_has_a_notice() -> None:
    flow = Flow("n", version="1").node("a", _done).build()
    state = new_run("r1", compile_blueprint(flow))
    assert notice_of(state, header_of(state), 2) is None


def test_read_notice_refuses_what_core_did_not_write() -> None:
    for text in ("", "[1]", "{", '{"version": "2", "header": {}, "records": {}, "context": {}}',
                 '{"version": 2, "header": [], "records": {}, "context": {}}'):  # fmt: skip
        assert read_notice(text) is None, text
    told = read_notice('{"version": 3, "header": {"settled": true}, "records": {}, "context": {}}')
    assert told == StoredResult(version=3, header={"settled": True}, records={}, context={})


@node("notices.done")
async def _done(ctx: NodeContext) -> dict[str, Any]:
    ctx.context.set("seen", "yes")
    return {"text": "é \u001f end"}


class _Reads(MemoryRunStore):
    """A memory store counting the reads of the state a result could be made of."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.notices: list[str | None] = []

    async def read_result(self, run_id: str, keys: Any) -> StoredResult | None:
        self.reads += 1
        return await super().read_result(run_id, keys)

    async def save_state(self, run_id: str, **parts: Any) -> bool:
        self.notices.append(parts.get("notice"))
        return await super().save_state(run_id, **parts)


async def test_the_client_builds_the_result_from_the_settled_saves_notice() -> None:
    release = asyncio.Event()

    @node("notices.wait")
    async def wait(ctx: NodeContext) -> str:
        del ctx
        await release.wait()
        return "waited"

    flow = Flow("n", version="1").node("w", wait).node("a", _done).edge("w", "a").build()
    store = _Reads()
    assert isinstance(store, ResultNotifier)
    queue = MemoryJobQueue(visibility=5, sticky=True)
    registry = {"notices.wait": wait, "notices.done": _done}
    worker = Worker(queue=queue, store=store, registry=registry, blueprints=[flow], poll=0.02)
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[flow]) as client:
            handle = await client.start("n")
            waiting = asyncio.ensure_future(handle.result(timeout=10))
            await asyncio.sleep(0.1)
            release.set()
            result = await waiting
            assert store.reads == 0, "the client read the result the notice carried"
            assert result == await client.snapshot(handle.run_id)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert (result.status, result.output) == (RunStatus.COMPLETED, {"text": "é \u001f end"})
    assert result.context == {"seen": "yes"}
    sent = [notice for notice in store.notices if notice is not None]
    assert len(sent) == 1, "only the save that settled the run carries a notice"
    assert store.notices[-1] == sent[0]
