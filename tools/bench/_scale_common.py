"""What ``bench_scale.py`` and its worker processes (``_scale_worker.py``) share.

The workloads (both sides build the same blueprints from the same functions, so a run started
by the bench is pinned to a digest its worker processes know), and the counting: a proxy of
the run store that counts saves, refused saves, full and catch-up loads and the bytes each save
sends, plus a log handler that counts ``ConflictError``s (jobs that gave up after repeated lost
compare-and-sets). Importable as ``_scale_common`` with ``tools/bench`` on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.core import Flow, NodeContext, node
from flowcraft.core.backends import Backend, BackendFactory
from flowcraft.core.ports import Message, RunStore, StoredState

PARKED_ID = "parked"


@node("bench.scale.noop")
async def noop(ctx: NodeContext) -> int:
    """A branch: no work at all."""
    del ctx
    return 1


def fan_in_id(width: int) -> str:
    """The blueprint id of the fan-in of ``width`` branches."""
    return f"fan-in-{width}"


def fan_in(width: int) -> Flow:
    """``start`` -> ``b0`` .. ``b{width-1}`` (no-ops) -> ``join`` (an ``all`` join)."""
    flow = Flow(fan_in_id(width), version="1").node("start", noop).node("join", noop)
    for i in range(width):
        flow = flow.node(f"b{i}", noop).edge("start", f"b{i}").edge(f"b{i}", "join")
    return flow


def parked(*, after_task: bool = False) -> Flow:
    """A run that parks: one wait node (``after_task``: a no-op first, run by a worker)."""
    flow = Flow(PARKED_ID, version="1").wait("park")
    if after_task:
        flow = flow.node("first", noop).edge("first", "park")
    return flow


def flows(width: int, *, after_task: bool = False) -> list[Flow]:
    """What a worker process knows: the parked blueprint and the fan-in of ``width`` (if > 0)."""
    return [parked(after_task=after_task), *([fan_in(width)] if width > 0 else [])]


@dataclass(slots=True, kw_only=True)
class Counts:
    """What one run cost the store (summed over the processes that served it)."""

    saves: int = 0
    refused: int = 0
    loads: int = 0
    catch_ups: int = 0
    bytes: int = 0
    conflicts: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for name, value in dataclasses.asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_json(self) -> str:
        """The counts as a JSON object."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Counts:
        """Counts written by :meth:`to_json`."""
        return cls(**json.loads(text))


def json_size(value: object) -> int:
    """Length of the compact JSON of ``value``."""
    return len(json.dumps(value, separators=(",", ":")))


class CountingStore:
    """A run store proxy that counts saves, refused saves, loads and the bytes saves send.

    A load with ``since=None`` is a full load; one with ``since`` a catch-up. The bytes of a
    save: compact JSON of its header, records and context writes, plus its outbox bodies.
    """

    def __init__(self, inner: RunStore, counts: Counts) -> None:
        self.inner = inner
        self.counts = counts

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - every other port method
        return getattr(self.inner, name)

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """Count (full or catch-up), then load."""
        if since is None:
            self.counts.loads += 1
        else:
            self.counts.catch_ups += 1
        return await self.inner.load_state(run_id, since=since, keys=keys)

    async def save_state(
        self,
        run_id: str,
        *,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[Message],
        **fields: Any,  # noqa: ANN401 - the rest of the port's keywords
    ) -> bool:
        """Count the save and its bytes, then save (and count it refused if it was)."""
        counts = self.counts
        counts.saves += 1
        counts.bytes += json_size(header) + json_size(records) + json_size(context_writes)
        counts.bytes += sum(len(m.body) for m in outbox)
        saved = await self.inner.save_state(
            run_id,
            header=header,
            records=records,
            context_writes=context_writes,
            outbox=outbox,
            **fields,
        )
        counts.refused += not saved
        return saved


class _Conflicts(logging.Handler):
    def __init__(self, counts: Counts) -> None:
        super().__init__(logging.ERROR)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and "ConflictError" in repr(record.exc_info[1].__class__):
            self.counts.conflicts += 1


@contextlib.contextmanager
def counting_conflicts(counts: Counts) -> Iterator[None]:
    """Count the ``ConflictError``s that ``flowcraft`` loggers report in this block."""
    handler = _Conflicts(counts)
    logger = logging.getLogger("flowcraft")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def count_store(backend: Backend, counts: Counts) -> None:
    """Put a counting proxy around ``backend.store`` (:func:`uncount_store` takes it off)."""
    backend.store = CountingStore(backend.store, counts)


def uncount_store(backend: Backend) -> None:
    """Put the real store back (a factory's ``close``/``destroy`` may look at its type)."""
    store = backend.store
    if isinstance(store, CountingStore):
        backend.store = store.inner


class Counted:
    """A factory whose backends' run stores count into ``counts`` (a ``BackendFactory``)."""

    def __init__(self, inner: BackendFactory, counts: Counts) -> None:
        self._inner = inner
        self.counts = counts
        self.capabilities = inner.capabilities

    async def create(self, namespace: str) -> Backend:
        """The inner factory's backend, its store counting."""
        backend = await self._inner.create(namespace)
        count_store(backend, self.counts)
        return backend

    async def close(self, backend: Backend) -> None:
        """Close through the inner factory."""
        uncount_store(backend)
        await self._inner.close(backend)

    async def destroy(self, backend: Backend) -> None:
        """Destroy through the inner factory."""
        uncount_store(backend)
        await self._inner.destroy(backend)
