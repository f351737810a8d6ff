"""``fault.step`` (a non-idempotent node), chains of it, and the check that each ran once."""

from __future__ import annotations

import asyncio
import os
import uuid

from flowcraft.core import Blueprint, NodeContext, RunResult, RunStatus, parse_blueprint
from flowcraft.core.testing.faults._journal import Journal, note
from flowcraft.core.testing.nodes import registry as suite_registry


async def step(ctx: NodeContext) -> dict[str, object]:
    """A non-idempotent step: a fresh ticket per execution, in its output and the context.

    The ticket is ``<node>/<pid>/<attempt>/<8 hex>``, unique per execution. The step notes
    ``started`` in the journal, sleeps ``params.seconds`` (default 0), writes the ticket to the
    context key ``t_<node>``, notes ``finished`` and returns ``{"ticket": <its ticket>,
    "after": <the input's ticket, or the input itself when it is not a step's output>}``.
    """
    ticket = f"{ctx.node_id}/{os.getpid()}/{ctx.attempt}/{uuid.uuid4().hex[:8]}"
    where = {"run": ctx.run_id, "node": ctx.node_id, "ticket": ticket}
    note({**where, "phase": "started"})
    await asyncio.sleep(float(ctx.params.get("seconds", 0)))
    ctx.context.set(f"t_{ctx.node_id}", ticket)
    note({**where, "phase": "finished"})
    after = ctx.input.get("ticket") if isinstance(ctx.input, dict) else ctx.input
    return {"ticket": ticket, "after": after}


#: What worker processes of a fault test load (``--registry
#: flowcraft.core.testing.faults:REGISTRY``): the conformance suite's nodes and ``fault.step``.
REGISTRY: dict[str, object] = {**suite_registry(), "fault.step": step}


def chain(blueprint_id: str, *seconds: float) -> Blueprint:
    """The blueprint ``s0 -> s1 -> ...`` (version "1") of ``fault.step`` nodes.

    Step ``i`` sleeps ``seconds[i]``; each receives the previous step's output.
    """
    nodes = [
        {"id": f"s{i}", "uses": "fault.step", "params": {"seconds": s}}
        for i, s in enumerate(seconds)
    ]
    edges = [{"source": f"s{i}", "target": f"s{i + 1}"} for i in range(len(seconds) - 1)]
    data = {"id": blueprint_id, "version": "1", "nodes": nodes, "edges": edges}
    return parse_blueprint(data, registry=REGISTRY)


def check_run(result: RunResult, blueprint: Blueprint, journal: Journal, first: object) -> None:
    """Assert a run of a :func:`chain` completed with every step committed exactly once.

    Committed once means one execution's ticket everywhere it shows: each node's output
    carries the ticket of an execution that finished (per the journal), the next node received
    that same ticket, the context write ``t_<node>`` holds it, and the run's output is the
    last node's. ``first`` is the run's input (what ``s0`` received). Raises
    ``AssertionError`` naming the node and what differed.
    """
    assert result.status is RunStatus.COMPLETED, result
    nodes = [node.id for node in blueprint.nodes]
    assert set(result.outputs) == set(nodes), (sorted(result.outputs), nodes)
    before = first
    for node in nodes:
        output = result.outputs[node]
        finished = {e["ticket"] for e in journal.steps(result.run_id, node, "finished")}
        assert output["ticket"] in finished, (node, output, finished)  # a real execution's
        assert output["after"] == before, (node, output, before)  # what the next one saw
        assert result.context[f"t_{node}"] == output["ticket"], (node, result.context)
        before = output["ticket"]
    assert result.output == result.outputs[nodes[-1]], (result.output, nodes[-1])
