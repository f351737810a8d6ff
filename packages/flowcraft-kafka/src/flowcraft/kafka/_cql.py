"""cassandra-driver's ``execute_async`` bridged to asyncio, statements prepared once.

The driver runs its own I/O thread; each ``ResponseFuture`` resolves an asyncio future through
a :class:`~flowcraft.kafka._relay.Relay` (one loop wake-up for the completions that arrive
together), so the event loop never blocks on Cassandra. Every statement is prepared (once per
session and text) and bound with the store's consistency levels (reads and writes at
``consistency``, lightweight transactions at ``serial_consistency``); every driver exception is
translated (:mod:`flowcraft.kafka._errors`). Reads follow the paging state to the last page.

Rows: the driver's default row factory builds a new ``namedtuple`` class for every result (in
its I/O thread); the store's statements ask for plain tuples instead (an execution profile
cloned from the session's default, everything else unchanged) and :class:`Result` gives them
named fields through one class per column list. A session in the driver's legacy
configuration mode (no execution profiles) keeps its own row factory.
"""

from __future__ import annotations

import asyncio
import re
from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.query import BatchStatement, BatchType, PreparedStatement, tuple_factory
from flowcraft.kafka._errors import from_cassandra
from flowcraft.kafka._relay import Relay

__all__ = ["Cql", "Result", "row_class"]

_APPLIED = "[applied]"
_ROW_CLASSES: dict[tuple[str, ...], type[Any]] = {}


def _field(name: str) -> str:
    """A column name as a field name: ``[applied]`` -> ``applied`` (as the driver names it)."""
    trimmed = re.sub(r"[^a-zA-Z0-9_]*$", "", re.sub(r"^[^a-zA-Z0-9]*", "", name))
    return re.sub(r"[^a-zA-Z0-9]", "_", trimmed)


def row_class(columns: Sequence[str]) -> type[Any]:
    """The named-tuple class of rows with ``columns`` (one per column list, built once)."""
    key = tuple(columns)
    found = _ROW_CLASSES.get(key)
    if found is None:
        built: type[Any] = namedtuple("Row", [_field(c) for c in key], rename=True)  # type: ignore[misc]
        found = _ROW_CLASSES[key] = built
    return found


class Result:
    """One page of a statement's result: named rows, ``was_applied``, ``paging_state``."""

    __slots__ = ("columns", "current_rows", "paging_state")

    def __init__(self, driver_result: Any) -> None:  # noqa: ANN401 - a driver ResultSet
        rows = driver_result.current_rows
        self.columns: list[str] = list(driver_result.column_names or ())
        self.paging_state: bytes | None = driver_result.paging_state
        if rows and type(rows[0]) is tuple and self.columns:  # plain tuples: name them
            rows = list(map(row_class(self.columns)._make, rows))
        self.current_rows: list[Any] = list(rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.current_rows)

    def one(self) -> Any:  # noqa: ANN401 - a row
        """The first row (None: no row)."""
        return self.current_rows[0] if self.current_rows else None

    @property
    def was_applied(self) -> bool:
        """Whether a conditional statement (or batch) applied."""
        if not self.columns or self.columns[0] != _APPLIED or not self.current_rows:
            raise RuntimeError("not the result of a conditional statement")
        return bool(self.current_rows[0][0])


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
        self._profile = _tuple_profile(session)
        self._relay: Relay | None = None
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
        found = self._prepared.get(query)
        if found is None:
            found = await self.prepare(query)
        return found.bind(list(params))

    async def execute(self, statement: Any, *, paging_state: bytes | None = None) -> Result:  # noqa: ANN401
        """Run one (bound or batch) statement; its result (first page)."""
        loop = asyncio.get_running_loop()
        relay = self._relay
        if relay is None or relay.loop is not loop:
            relay = self._relay = Relay(loop)
        done: asyncio.Future[Any] = loop.create_future()
        self.statements += 1
        try:
            if getattr(statement, "fetch_size", None) is None:
                statement.fetch_size = self.page_size
            future = self._send(statement, paging_state)
        except Exception as exc:
            raise from_cassandra(exc, "execute") from exc
        future.add_callbacks(relay.forward, relay.forward, callback_args=(_settled, done, future),
                             errback_args=(_failed, done))  # fmt: skip
        try:
            found = await done
        except Exception as exc:
            raise from_cassandra(exc, "execute") from exc
        return Result(found)

    def _send(self, statement: Any, paging_state: bytes | None) -> Any:  # noqa: ANN401
        """``execute_async`` with the tuple-rows profile.

        The profile is dropped if the session refuses profiles (the driver's legacy mode).
        """
        if self._profile is not None:
            try:
                return self.session.execute_async(
                    statement, paging_state=paging_state, execution_profile=self._profile
                )
            except ValueError:
                self._profile = None
        return self.session.execute_async(statement, paging_state=paging_state)

    async def run(self, query: str, *params: object) -> Result:
        """Prepare, bind and execute ``query``; its result."""
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

    async def batch(self, statements: Sequence[Any], *, conditional: bool = False) -> Result:
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


def _tuple_profile(session: Any) -> Any:  # noqa: ANN401
    """The session's default execution profile with plain-tuple rows (None: legacy mode)."""
    try:
        clone = session.execution_profile_clone_update
        return clone(EXEC_PROFILE_DEFAULT, row_factory=tuple_factory)
    except (ValueError, KeyError, AttributeError):  # legacy configuration: no profiles
        return None


# The driver calls ``callback(rows, *callback_args)`` and ``errback(exc, *errback_args)`` in
# its thread: ``relay.forward(rows, _settled, done, future)``, which runs
# ``_settled(rows, done, future)`` on the loop (``_failed(exc, done)`` likewise).


def _settled(_rows: object, done: asyncio.Future[Any], future: Any) -> None:  # noqa: ANN401
    if done.done():
        return
    try:
        done.set_result(future.result())
    except Exception as error:
        done.set_exception(error)


def _failed(exc: BaseException, done: asyncio.Future[Any]) -> None:
    if not done.done():
        done.set_exception(exc)
