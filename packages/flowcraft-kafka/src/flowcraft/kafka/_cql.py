"""cassandra-driver's ``execute_async`` bridged to asyncio, statements prepared once.

The driver runs its own I/O thread; each ``ResponseFuture`` resolves an asyncio future through
``call_soon_threadsafe``, so the event loop never blocks on Cassandra. Every statement is
prepared (once per session and text) and bound with the store's consistency levels (reads and
writes at ``consistency``, lightweight transactions at ``serial_consistency``); every driver
exception is translated (:mod:`flowcraft.kafka._errors`). Reads follow the paging state to the
last page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.query import BatchStatement, BatchType, PreparedStatement
from flowcraft.kafka._errors import from_cassandra

__all__ = ["Cql"]


class Cql:
    """A session's async face: ``execute``, ``rows`` (all pages) and batches."""

    def __init__(
        self, session: Any, *, consistency: int = ConsistencyLevel.LOCAL_QUORUM,  # noqa: ANN401
        serial_consistency: int = ConsistencyLevel.LOCAL_SERIAL, page_size: int = 5000,
    ) -> None:  # fmt: skip
        self.session = session
        self.consistency = consistency
        self.serial_consistency = serial_consistency
        self.page_size = page_size
        self._prepared: dict[str, PreparedStatement] = {}
        self.statements = 0  # round trips (benchmarks count them)
        self.lwts = 0

    async def prepare(self, query: str) -> PreparedStatement:
        """The prepared statement of ``query`` (prepared on first use)."""
        found = self._prepared.get(query)
        if found is None:
            try:
                found = await asyncio.to_thread(self.session.prepare, query)
            except Exception as exc:
                raise from_cassandra(exc, "prepare") from exc
            found.consistency_level = self.consistency  # type: ignore[union-attr]
            found.serial_consistency_level = self.serial_consistency  # type: ignore[union-attr]
            self._prepared[query] = found
        return found

    async def bound(self, query: str, params: Sequence[object]) -> Any:  # noqa: ANN401
        """``query`` prepared and bound to ``params``."""
        return (await self.prepare(query)).bind(list(params))

    async def execute(self, statement: Any, *, paging_state: bytes | None = None) -> Any:  # noqa: ANN401
        """Run one (bound or batch) statement; its result set (first page)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def ok(_rows: object) -> None:
            loop.call_soon_threadsafe(_settle, done, future, None)

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, done, None, exc)

        self.statements += 1
        try:
            if getattr(statement, "fetch_size", None) is None:
                statement.fetch_size = self.page_size
            future = self.session.execute_async(statement, paging_state=paging_state)
        except Exception as exc:
            raise from_cassandra(exc, "execute") from exc
        future.add_callbacks(ok, failed)
        try:
            return await done
        except Exception as exc:
            raise from_cassandra(exc, "execute") from exc

    async def run(self, query: str, *params: object) -> Any:  # noqa: ANN401
        """Prepare, bind and execute ``query``; its result set."""
        return await self.execute(await self.bound(query, params))

    async def rows(self, query: str, *params: object) -> list[Any]:
        """Every row of ``query``, following the paging state to the last page."""
        statement = await self.bound(query, params)
        result = await self.execute(statement)
        found = list(result.current_rows)
        while result.paging_state is not None:
            result = await self.execute(statement, paging_state=result.paging_state)
            found.extend(result.current_rows)
        return found

    async def batch(self, statements: Sequence[Any], *, conditional: bool = False) -> Any:  # noqa: ANN401
        """One unlogged batch (a conditional one keeps to one partition).

        Atomic and isolated within a partition; across partitions, each write applies alone.
        """
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency,
                               serial_consistency_level=self.serial_consistency)  # fmt: skip
        for statement in statements:
            batch.add(statement)
        if conditional:
            self.lwts += 1
        return await self.execute(batch)


def _settle(done: asyncio.Future[Any], future: Any, exc: BaseException | None) -> None:  # noqa: ANN401
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        try:
            done.set_result(future.result())
        except Exception as error:
            done.set_exception(error)
