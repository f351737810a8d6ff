"""The write path: ``events_create`` as one DynamoDB ``TransactWriteItems`` per event.

For each event: read the run item (strongly consistent; its ``seq`` is the run's last event
sequence), then the entities :func:`flowcraft.core.world.reads` asks for; call the shared
pure rules (:func:`flowcraft.core.world.decide`); commit the :class:`Transition` in one
transaction that

* bumps the run's ``seq`` on the condition that it still equals the snapshot's (or puts a
  new run on ``attribute_not_exists``): every event of a run bumps it, so it versions every
  entity of the run and the log stays dense;
* puts each event at its position (``attribute_not_exists``);
* puts new steps, hooks and waits on ``attribute_not_exists`` and updates existing ones;
* claims a new hook's token with a conditional put of its token item (and, for a
  ``hook_conflict``, checks the holder still holds it); frees the tokens of disposed and
  released hooks; records resume ids and ``attr_set`` correlation ids as marker items
  (written once).

A refused condition means a concurrent writer won: reload and decide again (with jittered
backoff). Writers of one run in one process queue on a lock first, so the optimistic retry
only arbitrates between processes.

**Remembered runs.** After each commit (and each load) the World remembers the run as of
its ``seq``: the run, and the steps, hooks and waits it loaded or wrote. The next event of
that run decides on the remembered snapshot without reading when it has what the event
needs (a step, hook or wait of the run; a ``step_created``/``wait_created`` guesses the
entity absent, a ``run_created`` with a minted id knows it): its transaction's condition on
``seq`` then proves the snapshot current (any other writer bumped ``seq``) and a guessed
absence is proved by the entity's ``attribute_not_exists`` put. So an event is one
``TransactWriteItems`` while one process writes a run. Only a commit is trusted: a refused
transaction, a decision that refuses the event or writes nothing (a repeat: a step that
already completed, say) and any error forget the run and decide again on a fresh read, so
repeats and races are answered exactly as before. Events that need a token, a resume id,
an ``attr_set`` marker or the run's hooks always read.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from flowcraft.aws_world._aws import Aws, Item
from flowcraft.aws_world._codec import Payloads
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._errors import Refused
from flowcraft.aws_world._tables import (
    RUNS_SHARD,
    Clock,
    attr_key,
    event_key,
    hook_key,
    n,
    resume_key,
    s,
    step_key,
    token_key,
    wait_key,
)
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.world import (
    Event,
    EventResult,
    EventType,
    Hook,
    HookConflictData,
    HookReceivedData,
    HookStatus,
    NewEvent,
    Policy,
    Refusal,
    Snapshot,
    Step,
    Transition,
    Wait,
    WorkflowRun,
    WorldRequestError,
    decide,
    reads,
)

_E = TypeVar("_E", Step, Hook, Wait)

#: Attempts of one event against concurrent writers before giving up (transient).
MAX_ATTEMPTS = 60
#: Runs remembered (least recently written forgotten first).
REMEMBERED_RUNS = 10_000


@dataclass(slots=True)
class _Remembered:
    """A run as of its event ``seq`` (see the module): what this World read or wrote."""

    seq: int
    ord: int
    run: WorkflowRun | None
    steps: dict[str, Step] = field(default_factory=dict)
    hooks: dict[str, Hook] = field(default_factory=dict)
    waits: dict[str, Wait] = field(default_factory=dict)

    def snapshot(self, event: NewEvent) -> Snapshot | None:
        """The snapshot ``event`` needs, if remembered (``None``: read it)."""
        needs = reads(event)
        if needs.token is not None or needs.run_hooks or needs.resume_id or needs.attr:
            return None
        key = event.correlation_id or ""
        step = self.steps.get(key) if needs.step else None
        hook = self.hooks.get(key) if needs.hook else None
        wait = self.waits.get(key) if needs.wait else None
        guessing = event.event_type in (EventType.STEP_CREATED, EventType.WAIT_CREATED)
        if (needs.step and step is None and not guessing) or (needs.hook and hook is None):
            return None
        if needs.wait and wait is None and not guessing:
            return None
        return Snapshot(run=self.run, last_sequence=self.seq, step=step, hook=hook, wait=wait)

    def learn(self, snapshot: Snapshot, transition: Transition) -> None:
        """What the snapshot read and the committed ``transition`` wrote."""
        for step in (snapshot.step, transition.step):
            if step is not None:
                self.steps[step.step_id] = step
        for wait in (snapshot.wait, transition.wait):
            if wait is not None:
                self.waits[wait.wait_id] = wait
        for hook in (snapshot.hook, *snapshot.run_hooks, transition.hook, *transition.released):
            if hook is not None:
                self.hooks[hook.hook_id] = hook
        if transition.run is not None:
            self.run = transition.run
        if transition.events:
            self.seq = transition.events[-1].sequence


class RunItems:
    """Loading and committing a run's items (the tables of one World)."""

    def __init__(
        self,
        aws: Aws,
        config: AwsWorldConfig,
        payloads: Payloads,
        clock: Callable[[], datetime],
    ) -> None:
        self._aws = aws
        self._config = config
        self._payloads = payloads
        self._clock = clock
        self._stamps = Clock()
        self._policy = Policy(run_retention=config.run_retention)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()

    # ------------------------------------------------------------------ write path

    async def events_create(self, run_id: str | None, event: NewEvent) -> EventResult:
        """Append ``event`` and apply its transition in one transaction (see the module)."""
        resolved = _resolve_run_id(run_id, event)
        lock = self._locks.get(resolved)
        if lock is None:
            lock = self._locks[resolved] = asyncio.Lock()
        async with lock:
            remembered = self._remembered.pop(resolved, None)  # back only after a commit
            if remembered is None and not run_id and event.event_type == EventType.RUN_CREATED:
                remembered = _Remembered(seq=0, ord=0, run=None)  # a minted id: no such run
            for attempt in range(MAX_ATTEMPTS):
                snapshot = None if remembered is None else remembered.snapshot(event)
                if snapshot is not None and remembered is not None:
                    ord_, fresh = remembered.ord, False
                else:
                    (snapshot, ord_), fresh = await self._load(resolved, event), True
                outcome = decide(snapshot, resolved, event, now=self._clock(), policy=self._policy)
                if not fresh and (isinstance(outcome, Refusal) or not outcome.events):
                    remembered = None  # only a commit proves a remembered snapshot: read
                    continue
                if isinstance(outcome, Refusal):
                    raise outcome.error
                if not outcome.events:
                    self._remember(resolved, None, snapshot, ord_, outcome)
                    return outcome.result
                try:
                    ord_ = await self._commit(resolved, snapshot, ord_, outcome)
                except Refused:
                    if fresh:
                        await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # noqa: S311
                    remembered = None
                    continue
                self._remember(resolved, None if fresh else remembered, snapshot, ord_, outcome)
                return outcome.result
        raise TransientBackendError(
            f"events_create on run {resolved!r}: {MAX_ATTEMPTS} attempts lost to concurrent writers"
        )

    def _remember(
        self,
        run_id: str,
        remembered: _Remembered | None,
        snapshot: Snapshot,
        ord_: int,
        transition: Transition,
    ) -> None:
        """Remember the run after ``transition`` (``remembered``: what it was decided on)."""
        if remembered is None:
            remembered = _Remembered(seq=snapshot.last_sequence, ord=ord_, run=snapshot.run)
        remembered.ord = ord_
        remembered.learn(snapshot, transition)
        if remembered.run is None:
            return
        self._remembered[run_id] = remembered
        self._remembered.move_to_end(run_id)
        while len(self._remembered) > REMEMBERED_RUNS:
            self._remembered.popitem(last=False)

    # ------------------------------------------------------------------ load

    async def get(self, table: str, key: dict[str, Any]) -> Item | None:
        """One item, strongly consistent (``None`` if absent)."""
        found = await self._aws.dynamodb("get_item", TableName=table, Key=key, ConsistentRead=True)
        item: Item | None = found.get("Item")
        return item

    async def load_run(self, run_id: str) -> tuple[WorkflowRun, int, int] | None:
        """The run, its last sequence and its creation stamp."""
        item = await self.get(self._config.runs_table, {"run_id": s(run_id)})
        if item is None:
            return None
        run = await self._payloads.load(WorkflowRun, item["doc"])
        return run, int(item["seq"]["N"]), int(item["ord"]["N"])

    async def _load(self, run_id: str, event: NewEvent) -> tuple[Snapshot, int]:
        """The snapshot ``event`` needs: one ``TransactGetItems``, then what it points to.

        The transactional read is a consistent cut across the run and its entities; the
        token holder, the resumed event and the run's hooks follow it.
        """
        needs = reads(event)
        key = event.correlation_id or ""
        cfg = self._config
        wanted: list[tuple[str, str, dict[str, Any]]] = [
            ("run", cfg.runs_table, {"run_id": s(run_id)})
        ]
        for name, on, table, item_key in (
            ("step", needs.step, cfg.steps_table, step_key(run_id, key)),
            ("hook", needs.hook, cfg.hooks_table, hook_key(run_id, key)),
            ("wait", needs.wait, cfg.steps_table, wait_key(run_id, key)),
            ("attr", needs.attr, cfg.steps_table, attr_key(run_id, key)),
            ("token", needs.token is not None, cfg.hooks_table, token_key(needs.token or "")),
            (
                "resume",
                needs.resume_id is not None,
                cfg.steps_table,
                resume_key(run_id, needs.resume_id or ""),
            ),
        ):
            if on:
                wanted.append((name, table, item_key))
        got = await self._aws.dynamodb(
            "transact_get_items",
            TransactItems=[{"Get": {"TableName": t, "Key": k}} for _, t, k in wanted],
        )
        found = {
            name: r.get("Item") for (name, _, _), r in zip(wanted, got["Responses"], strict=True)
        }
        run_item = found["run"]
        if run_item is None:
            return Snapshot(), 0
        run = await self._payloads.load(WorkflowRun, run_item["doc"])
        holder, run_hooks, resumed = await asyncio.gather(
            self._holder(found.get("token")),
            self._run_hooks(run_id, needs.run_hooks),
            self._event_at(run_id, found.get("resume")),
        )
        snapshot = Snapshot(
            run=run,
            last_sequence=int(run_item["seq"]["N"]),
            step=await self._doc(Step, found.get("step")),
            hook=await self._doc(Hook, found.get("hook")),
            wait=await self._doc(Wait, found.get("wait")),
            token_holder=holder,
            run_hooks=run_hooks,
            resumed=resumed,
            attr_exists=found.get("attr") is not None,
        )
        return snapshot, int(run_item["ord"]["N"])

    async def _doc(self, model: type[_E], item: Item | None) -> _E | None:
        return None if item is None else await self._payloads.load(model, item["doc"])

    async def _holder(self, claim: Item | None) -> Hook | None:
        if claim is None:
            return None
        key = hook_key(claim["run_id"]["S"], claim["hook_id"]["S"])
        return await self._entity(Hook, self._config.hooks_table, key, True)

    async def _event_at(self, run_id: str, marker: Item | None) -> Event | None:
        if marker is None:
            return None
        item = await self.get(self._config.events_table, event_key(run_id, int(marker["seq"]["N"])))
        return None if item is None else await self._payloads.load_event(item["doc"])

    async def _entity(
        self, model: type[_E], table: str, key: dict[str, Any], wanted: bool
    ) -> _E | None:
        if not wanted:
            return None
        item = await self.get(table, key)
        return None if item is None else await self._payloads.load(model, item["doc"])

    async def token_holder(self, token: str | None) -> Hook | None:
        """The hook whose claim on ``token`` stands (``None``: free)."""
        if token is None:
            return None
        return await self._holder(await self.get(self._config.hooks_table, token_key(token)))

    async def _run_hooks(self, run_id: str, wanted: bool) -> tuple[Hook, ...]:
        if not wanted:
            return ()
        items = await self.query_all(
            TableName=self._config.hooks_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": s("r#" + run_id)},
        )
        return tuple([await self._payloads.load(Hook, item["doc"]) for item in items])

    async def query_all(self, **params: Any) -> list[Item]:  # noqa: ANN401
        """Every item a consistent query returns, page after page."""
        items: list[Item] = []
        while True:
            page = await self._aws.dynamodb("query", ConsistentRead=True, **params)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ commit

    async def _commit(
        self, run_id: str, snapshot: Snapshot, ord_: int, transition: Transition
    ) -> int:
        """Write ``transition``; returns the run's creation stamp (new for a new run)."""
        stamp = self._stamps.stamp()
        ord_ = ord_ or stamp
        items = [await self._run_write(run_id, snapshot, (ord_, stamp), transition)]
        for event in transition.events:
            items += await self._event_writes(event)
        items += await self._entity_writes(snapshot, transition)
        await self._aws.dynamodb("transact_write_items", TransactItems=items)
        return ord_

    async def _run_write(
        self, run_id: str, snapshot: Snapshot, stamps: tuple[int, int], transition: Transition
    ) -> Item:
        last = transition.events[-1].sequence
        table = self._config.runs_table
        if transition.run is None:
            return {
                "Update": {
                    "TableName": table,
                    "Key": {"run_id": s(run_id)},
                    "UpdateExpression": "SET seq = :new",
                    "ConditionExpression": "seq = :old",
                    "ExpressionAttributeValues": {
                        ":new": n(last),
                        ":old": n(snapshot.last_sequence),
                    },
                }
            }
        run = transition.run
        ord_, stamp = stamps
        item = {
            "run_id": s(run_id),
            "doc": await self._payloads.dump(run),
            "seq": n(last),
            "ord": n(ord_),
            "uord": n(stamp),
            "shard": s(RUNS_SHARD),
            "status": s(run.status.value),
            "workflow_name": s(run.workflow_name),
        }
        put: Item = {"TableName": table, "Item": item}
        if snapshot.run is None:
            put["ConditionExpression"] = "attribute_not_exists(run_id)"
        else:
            put["ConditionExpression"] = "seq = :old"
            put["ExpressionAttributeValues"] = {":old": n(snapshot.last_sequence)}
        return {"Put": put}

    async def _event_writes(self, event: Event) -> list[Item]:
        cfg = self._config
        item = {**event_key(event.run_id, event.sequence), "doc": await self._payloads.dump(event)}
        writes: list[Item] = [
            _put(cfg.events_table, item, "attribute_not_exists(seq)"),
        ]
        data = event.data
        if isinstance(data, HookReceivedData) and data.resume_id is not None:
            marker = {**resume_key(event.run_id, data.resume_id), "seq": n(event.sequence)}
            writes.append(_put(cfg.steps_table, marker, "attribute_not_exists(sk)"))
        if event.event_type == EventType.ATTR_SET and event.correlation_id is not None:
            marker = {**attr_key(event.run_id, event.correlation_id), "seq": n(event.sequence)}
            writes.append(_put(cfg.steps_table, marker, "attribute_not_exists(sk)"))
        if event.event_type == EventType.HOOK_CONFLICT:
            writes.append(self._holder_check(event))
        return writes

    def _holder_check(self, event: Event) -> Item:
        data = event.data
        assert isinstance(data, HookConflictData)
        return {
            "ConditionCheck": {
                "TableName": self._config.hooks_table,
                "Key": token_key(data.token),
                "ConditionExpression": "run_id = :r",
                "ExpressionAttributeValues": {":r": s(data.conflicting_run_id or "")},
            }
        }

    async def _entity_writes(self, snapshot: Snapshot, transition: Transition) -> list[Item]:
        cfg = self._config
        writes: list[Item] = []
        sequence = transition.events[0].sequence
        if (step := transition.step) is not None:
            key = step_key(step.run_id, step.step_id)
            writes.append(
                await self._upsert(cfg.steps_table, key, step, snapshot.step, "sord", sequence)
            )
        if (wait := transition.wait) is not None:
            key = wait_key(wait.run_id, wait.wait_id)
            writes.append(
                await self._upsert(cfg.steps_table, key, wait, snapshot.wait, None, sequence)
            )
        if (hook := transition.hook) is not None:
            key = hook_key(hook.run_id, hook.hook_id)
            writes.append(
                await self._upsert(cfg.hooks_table, key, hook, snapshot.hook, "hord", sequence)
            )
            writes += self._token_writes(hook, new=snapshot.hook is None)
        for released in transition.released:
            key = hook_key(released.run_id, released.hook_id)
            writes.append(await self._upsert(cfg.hooks_table, key, released, released, None, 0))
            writes += self._token_writes(released, new=False)
        return writes

    async def _upsert(  # noqa: PLR0917 (an entity write's parts, named at every call)
        self,
        table: str,
        key: dict[str, Any],
        entity: Step | Hook | Wait,
        before: Step | Hook | Wait | None,
        order_attribute: str | None,
        sequence: int,
    ) -> Item:
        doc = await self._payloads.dump(entity)
        if before is None:
            item = {**key, "doc": doc}
            if order_attribute is not None:
                item[order_attribute] = n(sequence)
            return _put(table, item, "attribute_not_exists(sk)")
        return {
            "Update": {
                "TableName": table,
                "Key": key,
                "UpdateExpression": "SET doc = :doc",
                "ExpressionAttributeValues": {":doc": doc},
            }
        }

    def _token_writes(self, hook: Hook, *, new: bool) -> list[Item]:
        table = self._config.hooks_table
        if new:
            claim = {**token_key(hook.token), "run_id": s(hook.run_id), "hook_id": s(hook.hook_id)}
            return [_put(table, claim, "attribute_not_exists(pk)")]
        if hook.status != HookStatus.DISPOSED:
            return []
        return [
            {
                "Delete": {
                    "TableName": table,
                    "Key": token_key(hook.token),
                    "ConditionExpression": (
                        "attribute_not_exists(pk) OR (run_id = :r AND hook_id = :h)"
                    ),
                    "ExpressionAttributeValues": {":r": s(hook.run_id), ":h": s(hook.hook_id)},
                }
            }
        ]


def _put(table: str, item: Item, condition: str) -> Item:
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": condition}}


def _resolve_run_id(run_id: str | None, event: NewEvent) -> str:
    if run_id:
        return run_id
    if event.event_type == EventType.RUN_CREATED:
        return f"wrun_{uuid.uuid4().hex}"
    raise WorldRequestError(f"{event.event_type} needs a run id", code="run_id_required")


__all__ = ["RunItems"]
