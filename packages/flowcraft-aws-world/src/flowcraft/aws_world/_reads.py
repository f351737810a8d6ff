"""The reads: runs, steps, hooks, waits and events, strongly consistent where DynamoDB can.

Items of one run are read with consistent reads (the run, its steps, hooks, waits and log),
so a replay sees every event committed before it. ``runs_list`` reads a global secondary
index (``by_created``, ``by_name`` or ``by_status``): GSIs are eventually consistent on
AWS, so a run created a moment ago may be missing from a list for a moment. Pages use
core's cursors (positions: a run's creation stamp, an entity's creation sequence, an
event's sequence) and read ``limit + 1`` items to tell whether there are more.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flowcraft.aws_world._aws import Aws, Item
from flowcraft.aws_world._codec import Payloads
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._store import RunItems
from flowcraft.aws_world._tables import RUNS_SHARD, hook_key, n, s, step_key, wait_key
from flowcraft.core.world import (
    Event,
    Hook,
    HookNotFoundError,
    Page,
    Pagination,
    ResolveData,
    RunStatus,
    Step,
    Wait,
    WorkflowRun,
    WorldNotFoundError,
)
from flowcraft.core.world._pages import decode_cursor, encode_cursor
from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


class Reads:
    """Every read of the World's storage."""

    def __init__(
        self, aws: Aws, config: AwsWorldConfig, payloads: Payloads, items: RunItems
    ) -> None:
        self._aws = aws
        self._config = config
        self._payloads = payloads
        self._items = items

    async def runs_get(self, run_id: str, resolve_data: ResolveData) -> WorkflowRun:
        """The run (404 if none)."""
        loaded = await self._items.load_run(run_id)
        if loaded is None:
            raise WorldNotFoundError(f"run {run_id!r} not found", code="run_not_found")
        return strip(loaded[0], resolve_data)

    async def runs_list(
        self,
        workflow_name: str | None,
        status: RunStatus | None,
        pagination: Pagination | None,
        resolve_data: ResolveData,
    ) -> Page[WorkflowRun]:
        """Runs in creation order from the index that fits the filters."""
        params: dict[str, Any] = {"TableName": self._config.runs_table}
        if workflow_name is not None:
            index, partition, value = "by_name", "workflow_name", workflow_name
            if status is not None:
                params["FilterExpression"] = "#st = :st"
                params["ExpressionAttributeNames"] = {"#st": "status"}
        elif status is not None:
            index, partition, value = "by_status", "status", status.value
        else:
            index, partition, value = "by_created", "shard", RUNS_SHARD
        params["IndexName"] = index
        values = {":p": s(value)}
        if status is not None and workflow_name is not None:
            values[":st"] = s(status.value)
        page = await self._page(
            params, partition, "ord", values, pagination, "runs", consistent=False
        )
        runs = [
            strip(await self._payloads.load(WorkflowRun, i["doc"]), resolve_data) for i in page[0]
        ]
        return Page[WorkflowRun](data=runs, cursor=page[1], has_more=page[2])

    async def _page(  # noqa: PLR0917 (a query's parts, named at every call)
        self,
        params: dict[str, Any],
        partition: str,
        position: str,
        values: dict[str, Any],
        pagination: Pagination | None,
        kind: str,
        *,
        consistent: bool = True,
    ) -> tuple[list[Item], str | None, bool]:
        request = pagination or Pagination()
        ascending = request.sort_order == "asc"
        condition = "#p = :p"
        names = {**params.pop("ExpressionAttributeNames", {}), "#p": partition}
        if request.cursor is not None:
            after = decode_cursor(request.cursor, kind, request.sort_order)
            condition += f" AND #o {'>' if ascending else '<'} :after"
            names["#o"] = position
            values = {**values, ":after": n(after)}
        params.update(
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ScanIndexForward=ascending,
        )
        if consistent:
            params["ConsistentRead"] = True
        items: list[Item] = []
        while len(items) <= request.limit:
            params["Limit"] = request.limit + 1 - len(items)
            result = await self._aws.dynamodb("query", **params)
            items += result.get("Items", [])
            if "LastEvaluatedKey" not in result:
                break
            params["ExclusiveStartKey"] = result["LastEvaluatedKey"]
        data = items[: request.limit]
        cursor = (
            encode_cursor(kind, request.sort_order, int(data[-1][position]["N"]))
            if data
            else request.cursor
        )
        return data, cursor, len(items) > len(data)

    async def steps_get(self, run_id: str, step_id: str, resolve_data: ResolveData) -> Step:
        """The step (404 if none)."""
        item = await self._items.get(self._config.steps_table, step_key(run_id, step_id))
        if item is None:
            raise WorldNotFoundError(f"step {step_id!r} not found", code="step_not_found")
        return strip(await self._payloads.load(Step, item["doc"]), resolve_data)

    async def steps_list(
        self, run_id: str, pagination: Pagination | None, resolve_data: ResolveData
    ) -> Page[Step]:
        """The run's steps in creation order (the sparse local index ``by_order``)."""
        params = {"TableName": self._config.steps_table, "IndexName": "by_order"}
        items, cursor, more = await self._page(
            params, "run_id", "sord", {":p": s(run_id)}, pagination, "steps"
        )
        steps = [strip(await self._payloads.load(Step, i["doc"]), resolve_data) for i in items]
        return Page[Step](data=steps, cursor=cursor, has_more=more)

    async def hooks_get(self, run_id: str, hook_id: str) -> Hook:
        """The hook, active or disposed (404 if none)."""
        item = await self._items.get(self._config.hooks_table, hook_key(run_id, hook_id))
        if item is None:
            raise HookNotFoundError(f"hook {hook_id!r} not found")
        return await self._payloads.load(Hook, item["doc"])

    async def hooks_get_by_token(self, token: str) -> Hook:
        """The active hook holding ``token``."""
        hook = await self._items.token_holder(token)
        if hook is None:
            raise HookNotFoundError(f"no active hook holds token {token!r}")
        return hook

    async def hooks_list(self, run_id: str, pagination: Pagination | None) -> Page[Hook]:
        """The run's hooks in creation order."""
        params = {"TableName": self._config.hooks_table, "IndexName": "by_order"}
        items, cursor, more = await self._page(
            params, "pk", "hord", {":p": s("r#" + run_id)}, pagination, "hooks"
        )
        hooks = [await self._payloads.load(Hook, i["doc"]) for i in items]
        return Page[Hook](data=hooks, cursor=cursor, has_more=more)

    async def waits_get(self, run_id: str, wait_id: str) -> Wait:
        """The wait (404 if none)."""
        item = await self._items.get(self._config.steps_table, wait_key(run_id, wait_id))
        if item is None:
            raise WorldNotFoundError(f"wait {wait_id!r} not found", code="wait_not_found")
        return await self._payloads.load(Wait, item["doc"])

    async def events_list(
        self, run_id: str, pagination: Pagination | None, resolve_data: ResolveData
    ) -> Page[Event]:
        """The run's events by sequence (an unknown run: an empty page)."""
        params = {"TableName": self._config.events_table}
        items, cursor, more = await self._page(
            params, "run_id", "seq", {":p": s(run_id)}, pagination, "events"
        )
        with_data = resolve_data == "all"
        events = [await self._payloads.load_event(i["doc"], with_data=with_data) for i in items]
        return Page[Event](data=events, cursor=cursor, has_more=more)


def strip(entity: T, resolve_data: ResolveData) -> T:
    """``entity`` without its payloads when ``resolve_data`` is ``"none"``."""
    if resolve_data == "all":
        return entity
    return entity.model_copy(update={"input": None, "output": None, "error": None})
