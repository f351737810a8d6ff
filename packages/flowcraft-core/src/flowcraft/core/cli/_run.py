"""``flowcraft run FILE``: run a blueprint in memory, show progress, print the result as JSON.

    flowcraft run etl.yaml --registry examples.etl.nodes:registry --input @input.json
    flowcraft run approval.yaml --registry app:registry --resume 'review:approve={"by": "ann"}'

Progress goes to stderr: a live status line on a terminal (``--watch``, the default there),
one plain line per node event otherwise. The result (``{run_id, status, output, context,
outputs, errors}``) goes to stdout. Exit code 0 when the run completed, 1 when it failed, was
cancelled or is left awaiting, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from flowcraft.core._analysis.facts import analyze
from flowcraft.core._analysis.mermaid import to_mermaid
from flowcraft.core._engine.frames import ROOT
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime import events as fe
from flowcraft.core._runtime.context import NodeLogFilter
from flowcraft.core._runtime.result import RunResult
from flowcraft.core._runtime.runtime import FlowRuntime, RunHandle
from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    add_expression_budget,
    add_file_arguments,
    expression_budget,
    json_argument,
    read_blueprint,
    report,
    write_output,
)
from flowcraft.core.cli._progress import Progress
from flowcraft.core.cli._registry import import_implementations
from flowcraft.core.cli._stop import INTERRUPTED, Stop, exit_now_if_threads_linger, report_stop
from flowcraft.core.errors import ResumeError


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    parser = subcommands.add_parser("run", help="run a blueprint in memory and print the result")
    add_file_arguments(parser)
    parser.add_argument(
        "--registry", metavar="MODULE:ATTR", required=True, help="node implementations"
    )
    parser.add_argument("--input", default="null", help="run input: JSON text or @FILE")
    parser.add_argument(
        "--blueprint",
        action="append",
        default=[],
        metavar="FILE",
        help="another blueprint that subflows or loops name (repeatable)",
    )
    parser.add_argument(
        "--resume",
        action="append",
        default=[],
        metavar="NODE[:ACTION][=JSON]",
        help="resume an awaiting node when the run waits (repeatable, applied in order)",
    )
    watch = parser.add_mutually_exclusive_group()
    watch.add_argument("--watch", dest="watch", action="store_true", default=None)
    watch.add_argument("--no-watch", dest="watch", action="store_false")
    parser.add_argument("--mermaid", metavar="OUT.mmd", help="write the run's coloured diagram")
    parser.add_argument("--timeout", type=float, help="give up (cancel) after SECONDS")
    add_expression_budget(parser)
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="show log records of this level and above on stderr (ctx.logger included)",
    )
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class ResumeSpec:
    """One ``--resume`` option."""

    node: str
    action: str | None
    output: object


def parse_resume(text: str) -> ResumeSpec:
    """Parse ``NODE[:ACTION][=JSON]``."""
    head, has_value, raw = text.partition("=")
    node, _, action = head.partition(":")
    if not node:
        raise UsageError(f"--resume wants NODE[:ACTION][=JSON], got {text!r}")
    output = json_argument(raw, "--resume") if has_value else None
    return ResumeSpec(node=node, action=action or None, output=output)


def run(args: argparse.Namespace) -> int:
    """Load, run, report."""
    registry = import_implementations(args.registry)
    loaded = read_blueprint(args, registry)
    if isinstance(loaded, list):
        report(loaded, as_json=False)
        return EXIT_PROBLEMS
    others = [_load_other(path, args, registry) for path in args.blueprint]
    resumes = [parse_resume(text) for text in args.resume]
    input_value = json_argument(args.input, "--input")
    watch = sys.stderr.isatty() if args.watch is None else args.watch
    runtime = FlowRuntime(
        registry=registry, blueprints=others, expression_budget=expression_budget(args)
    )
    _log_to_stderr(args.log_level)
    stop = Stop()
    try:  # stdout carries the result only: what nodes print goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result, states = asyncio.run(
                _execute(
                    runtime,
                    loaded,
                    input_value,
                    resumes=resumes,
                    watch=watch,
                    timeout=args.timeout,
                    stop=stop,
                )
            )
    finally:
        runtime.close()
    printed = result.to_dict()
    report_stop(printed, stop)
    print(json.dumps(printed, indent=2, default=str))
    if args.mermaid:
        write_output(to_mermaid(loaded, states), args.mermaid)
    code = EXIT_OK if result.status is RunStatus.COMPLETED else EXIT_PROBLEMS
    code = INTERRUPTED if stop.interrupted else code
    if stop.reason is not None:
        exit_now_if_threads_linger(code)
    return code


def _log_to_stderr(level: str) -> None:
    """Log records of ``level`` and above (nodes' ``ctx.logger`` too) as lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NodeLogFilter())  # which run, node and attempt logged it
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(flowcraft_node)s%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def _load_other(path: str, args: argparse.Namespace, registry: Mapping[str, object]) -> Blueprint:
    other = read_blueprint(argparse.Namespace(file=path, dialect=args.dialect), registry)
    if isinstance(other, list):
        report(other, as_json=False)
        raise UsageError(f"{path}: invalid blueprint")
    return other


async def _execute(
    runtime: FlowRuntime,
    blueprint: Blueprint,
    input_value: object,
    *,
    resumes: list[ResumeSpec],
    watch: bool,
    timeout: float | None,
    stop: Stop,
) -> tuple[RunResult, dict[str, str]]:
    # Top-level nodes a run resolves: fallback handlers run only instead of another node.
    total = len(blueprint.nodes) - len(analyze(blueprint).fallback_nodes)
    progress = Progress(live=watch, total=total)
    awaiting = asyncio.Event()
    runtime.events.subscribe(progress.on_event)
    runtime.events.subscribe(lambda event: awaiting.set(), fe.RunAwaiting)
    stop.install()  # before anything runs: a Ctrl-C from now on cancels the run
    progress.start()
    handle = await runtime.start(blueprint, input_value)
    try:
        result = await stop.run(_drive(handle, awaiting, resumes), handle, timeout)
    finally:
        progress.close()
    return result, _states(runtime, handle.run_id)


async def _drive(
    handle: RunHandle, awaiting: asyncio.Event, resumes: list[ResumeSpec]
) -> RunResult:
    done = asyncio.ensure_future(handle.result())
    pending = list(resumes)
    while True:
        waiter = asyncio.ensure_future(awaiting.wait())
        finished, _ = await asyncio.wait({done, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if done in finished:
            waiter.cancel()
            return done.result()
        awaiting.clear()
        if not pending:
            done.cancel()
            return handle.snapshot()
        spec = pending.pop(0)
        try:
            await handle.resume(spec.node, output=spec.output, action=spec.action)
        except ResumeError as exc:
            done.cancel()
            raise UsageError(f"--resume {spec.node}: {exc}") from None


def _states(runtime: FlowRuntime, run_id: str) -> dict[str, str]:
    state = runtime._driver(run_id).state
    return {r.node_id: r.status.value for r in state.nodes.values() if r.frame == ROOT}
