"""FlowRuntime: runs blueprints in memory, in one process, with every semantic of the core."""

from __future__ import annotations

import asyncio
import difflib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.actions import StartChildRun
from flowcraft.core._engine.compile import compile_blueprint
from flowcraft.core._engine.plan import Plan
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._expressions import DEFAULT_BUDGET, checked_budget
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.driver import ParentLink, RunDriver
from flowcraft.core._runtime.events import EventBus
from flowcraft.core._runtime.execute import NodeExecutor
from flowcraft.core._runtime.handle import HandleBase, check_resumed, resume_event
from flowcraft.core._runtime.nodes import NodeForms
from flowcraft.core._runtime.result import RunResult, result_of
from flowcraft.core._runtime.serializer import JsonSerializer, Serializer
from flowcraft.core.errors import (
    RunNotFoundError,
    UnknownBlueprintError,
)

#: Something the runtime can run: a Blueprint, a Plan, or the id of a registered one.
PlanSource = Blueprint | Plan | str


class RunHandle(HandleBase):
    """A started run: await its result, look at its status, cancel or resume it."""

    def __init__(self, runtime: FlowRuntime, run_id: str) -> None:
        super().__init__(runtime, run_id)
        self._runtime = runtime

    async def result(self, timeout: float | None = None) -> RunResult:
        """Wait for the final result (``TimeoutError`` after ``timeout`` seconds)."""
        driver = self._runtime._driver(self.run_id)
        async with asyncio.timeout(timeout):
            return await asyncio.shield(driver.done)

    def status(self) -> RunStatus:
        """The run's status now."""
        return self._runtime._driver(self.run_id).state.status

    def snapshot(self) -> RunResult:
        """The run's result as it stands now (not necessarily final)."""
        return result_of(self._runtime._driver(self.run_id).state)


class FlowRuntime:
    """Runs blueprints in memory.

    Args:
        registry: ``uses`` key -> implementation (function, ``async def`` function or class).
        blueprints: Blueprints (or plans) that subflows and ``run("id")`` may name.
        middleware: Wrappers around every node attempt (see ``Middleware``), outermost first.
        dependencies: User objects handed to every node as ``ctx.deps``.
        serializer: Round-trips outputs and context writes (JSON by default), so in-memory
            runs behave like distributed ones.
        max_threads: Size of the thread pool that runs plain (sync) functions.
        inline_sync: Call sync functions on the event loop (only for nodes that never block).
        expression_budget: Seconds of work one expression evaluation may take (default 0.1);
            an evaluation that needs more fails its edge or node with ``ExpressionError``. It is
            also the longest an evaluation holds the event loop.
    """

    def __init__(
        self,
        *,
        registry: Mapping[str, object] | None = None,
        blueprints: Iterable[Blueprint | Plan] = (),
        middleware: Sequence[object] = (),
        dependencies: Mapping[str, Any] | None = None,
        serializer: Serializer | None = None,
        max_threads: int = 16,
        inline_sync: bool = False,
        expression_budget: float = DEFAULT_BUDGET,
    ) -> None:
        self.expression_budget = checked_budget(expression_budget)
        self.registry: dict[str, object] = dict(registry or {})
        self.events = EventBus()
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="flowcraft-node")
        self.executor = NodeExecutor(
            registry=self.registry,
            forms=NodeForms(self._threads, inline_sync=inline_sync),
            serializer=serializer or JsonSerializer(),
            middleware=middleware,
            dependencies=dependencies,
        )
        self._plans: dict[str, Plan] = {}
        self._drivers: dict[str, RunDriver] = {}
        self._idempotency: dict[str, str] = {}
        for source in blueprints:
            self.add_blueprint(source)

    # ---------------------------------------------------------------- registration

    def add_blueprint(self, source: Blueprint | Plan) -> Plan:
        """Register a blueprint (or plan) so runs and subflows can name it by id."""
        plan = self._to_plan(source)
        self._plans[plan.id] = plan
        return plan

    def register(self, uses: str, implementation: object) -> None:
        """Register (or replace) the implementation behind ``uses``."""
        self.registry[uses] = implementation
        self.executor.forget(uses)

    # ---------------------------------------------------------------- running

    async def run(
        self,
        blueprint: PlanSource,
        input: object = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run to a final result (completed, failed or cancelled) and return it.

        A run that awaits a human never finishes by itself: use :meth:`start` and
        :meth:`RunHandle.resume` for those, or pass ``timeout``.
        """
        handle = await self.start(blueprint, input, run_id=run_id, idempotency_key=idempotency_key)
        return await handle.result(timeout)

    def run_sync(
        self,
        blueprint: PlanSource,
        input: object = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """:meth:`run` from synchronous code (starts and closes its own event loop)."""
        run = self.run(
            blueprint, input, run_id=run_id, idempotency_key=idempotency_key, timeout=timeout
        )
        return asyncio.run(run)

    async def start(
        self,
        blueprint: PlanSource,
        input: object = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunHandle:
        """Start a run and return its handle at once.

        A repeated ``idempotency_key`` returns the existing run instead of starting another.
        """
        if idempotency_key is not None and idempotency_key in self._idempotency:
            return RunHandle(self, self._idempotency[idempotency_key])
        plan = self._resolve(blueprint)
        run_id = run_id or uuid.uuid4().hex
        if run_id in self._drivers:
            return RunHandle(self, run_id)
        if idempotency_key is not None:
            self._idempotency[idempotency_key] = run_id
        driver = RunDriver(self, run_id, plan)
        self._drivers[run_id] = driver
        driver.post(ev.RunStarted(at=time.time(), input=self.executor.roundtrip(input)))
        return RunHandle(self, run_id)

    def handle(self, run_id: str) -> RunHandle:
        """The handle of a known run."""
        self._driver(run_id)
        return RunHandle(self, run_id)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run (idempotent)."""
        self._driver(run_id).post(ev.CancelRequested(at=time.time()))

    async def resume(
        self,
        run_id: str,
        node: str | None = None,
        *,
        output: object = None,
        action: str | None = None,
        frame: str = "",
        token: str | None = None,
    ) -> None:
        """Resume an awaiting node. A duplicate resume is a no-op; a wrong one raises."""
        output = self.executor.roundtrip(output)
        event = resume_event(node, output=output, action=action, frame=frame, token=token)
        driver = self._token_owner(token) if token else self._driver(run_id)
        check_resumed(driver.run_id, driver.post(event))

    def close(self) -> None:
        """Release the thread pool."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- internals

    def _driver(self, run_id: str) -> RunDriver:
        driver = self._drivers.get(run_id)
        if driver is None:
            raise RunNotFoundError(run_id, f"no run {run_id!r} in this runtime")
        return driver

    def _token_owner(self, token: str) -> RunDriver:
        """The run (parent or child) that issued ``token``."""
        for driver in self._drivers.values():
            if token in driver.state.tokens:
                return driver
        raise RunNotFoundError(token, f"no awaiting node has the token {token!r}")

    def _resolve(self, source: PlanSource) -> Plan:
        if isinstance(source, str):
            if source not in self._plans:
                raise UnknownBlueprintError(_unknown(source, self._plans))
            return self._plans[source]
        plan = self._to_plan(source)
        self._plans.setdefault(plan.id, plan)
        return plan

    def _to_plan(self, source: Blueprint | Plan) -> Plan:
        if isinstance(source, Plan):
            return source
        if isinstance(source, Blueprint):
            return compile_blueprint(
                source, self._resolve, expression_budget=self.expression_budget
            )
        raise TypeError(
            f"cannot run a {type(source).__name__}: pass a Blueprint (load_blueprint, "
            "parse_blueprint or Flow(...).build()) or the id of a registered one"
        )

    def _start_child(self, action: StartChildRun, link: ParentLink) -> None:
        if action.child_run_id in self._drivers:
            return
        plan = self._resolve(action.blueprint)
        driver = RunDriver(self, action.child_run_id, plan, parent=link)
        self._drivers[action.child_run_id] = driver
        asyncio.get_running_loop().call_soon(
            driver.post, ev.RunStarted(at=time.time(), input=action.input)
        )


def _unknown(name: str, known: Iterable[str], what: str = "blueprint") -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"no {what} {name!r}{suffix}"
