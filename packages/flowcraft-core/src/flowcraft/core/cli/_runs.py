"""Run management on a backend: ``start``, ``status``, ``result``, ``cancel``, ``resume``, ``runs``.

    flowcraft start FILE --backend rabbitmq [--input JSON|@FILE] [--wait [--timeout S]] [--json]
    flowcraft status RUN --backend rabbitmq [--json]
    flowcraft result RUN --backend rabbitmq --blueprint FILE [--wait [--timeout S]]
    flowcraft cancel RUN --backend rabbitmq --blueprint FILE
    flowcraft resume RUN NODE --backend rabbitmq --blueprint FILE [--action A] [--output JSON]
    flowcraft runs --backend rabbitmq [--status S] [--limit N] [--json]

They use the same backend settings as ``flowcraft worker`` (``--backend``, ``--option``,
``--namespace``, environment variables, a config file: ``--config``, ``$FLOWCRAFT_CONFIG`` or
``./flowcraft.toml``). ``result``, ``cancel`` and ``resume`` decide on the run's state, so
they need the blueprint the run is pinned to (``--blueprint``); ``status`` and ``runs`` read
run records only. Starting a run needs no worker: a worker picks it up when it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from flowcraft.core._distributed.client import Client
from flowcraft.core._distributed.coordinator import VersionUnavailableError
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._model.graph import Blueprint
from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    json_argument,
    read_blueprint,
    report,
)
from flowcraft.core.cli._distributed import (
    backend_arguments,
    backend_factory,
    backend_settings,
    blueprint_set,
)
from flowcraft.core.errors import ResumeError, RunNotFoundError
from flowcraft.core.ports import RunRecord


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the run-management subcommands."""
    start = _parser(subcommands, "start", "start a run on a backend (prints its id)")
    start.add_argument("file", metavar="FILE", help="the blueprint to run")
    start.add_argument("--input", default="null", help="run input: JSON text or @FILE")
    start.add_argument("--idempotency-key", help="a repeated key returns the existing run")
    _wait_arguments(start)
    start.set_defaults(run=run_start)
    status = _parser(subcommands, "status", "a run's status")
    status.add_argument("run_id", metavar="RUN")
    status.set_defaults(run=run_status)
    result = _parser(subcommands, "result", "a run's result (needs --blueprint)")
    result.add_argument("run_id", metavar="RUN")
    _wait_arguments(result)
    result.set_defaults(run=run_result)
    cancel = _parser(subcommands, "cancel", "cancel a run (needs --blueprint)")
    cancel.add_argument("run_id", metavar="RUN")
    cancel.set_defaults(run=run_cancel)
    resume = _parser(subcommands, "resume", "resume an awaiting node (needs --blueprint)")
    resume.add_argument("run_id", metavar="RUN")
    resume.add_argument("node", metavar="NODE", help="the awaiting node's id (or --token)")
    resume.add_argument("--action", help="one of the actions the node's edges declare")
    resume.add_argument("--output", default="null", help="the node's output: JSON text or @FILE")
    resume.add_argument("--token", action="store_true", help="NODE is a resume token")
    resume.set_defaults(run=run_resume)
    runs = _parser(subcommands, "runs", "list runs, newest first")
    runs.add_argument("--status", choices=[s.value for s in RunStatus])
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(run=run_runs)


def _parser(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
) -> argparse.ArgumentParser:
    parser = subcommands.add_parser(name, help=text, description=text)
    backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait for the final result")
    parser.add_argument("--timeout", type=float, help="with --wait: give up after SECONDS")


def _on_client(
    args: argparse.Namespace,
    work: Callable[[Client], Awaitable[int]],
    also: Blueprint | None = None,
) -> int:
    """Run ``work`` with a client over the backend's namespace; user mistakes exit cleanly.

    ``also``: a blueprint loaded already (``start``'s FILE), known besides ``--blueprint``.
    """
    settings = backend_settings(args)
    factory = backend_factory(settings)
    blueprints = blueprint_set(args, None, required=False)
    if also is not None:
        blueprints.add(also)

    async def main() -> int:
        backend = await factory.create(settings.namespace)
        try:
            async with Client(queue=backend.queue, store=backend.store, blueprints=blueprints) as c:
                return await work(c)
        finally:
            await factory.close(backend)

    try:
        return asyncio.run(main())
    except RunNotFoundError as exc:
        print(f"flowcraft: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    except VersionUnavailableError as exc:
        raise UsageError(f"{exc}: pass that blueprint with --blueprint FILE") from None
    except ResumeError as exc:
        raise UsageError(str(exc)) from None


def _print_result(client: Client, run_id: str, args: argparse.Namespace) -> Awaitable[int]:
    async def show() -> int:
        if args.wait:
            try:
                result = await client.result(run_id, timeout=args.timeout)
            except TimeoutError:
                over = f"flowcraft: run {run_id} is not over after {args.timeout:g} s"
                print(over, file=sys.stderr)
                return EXIT_PROBLEMS
        else:
            result = await client.snapshot(run_id)
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return EXIT_OK if result.status is RunStatus.COMPLETED else EXIT_PROBLEMS

    return show()


def run_start(args: argparse.Namespace) -> int:
    """Start a run of FILE; print its id (or its result with ``--wait``)."""
    loaded = read_blueprint(args)
    if isinstance(loaded, list):
        report(loaded, as_json=False)
        return EXIT_PROBLEMS
    input_value = json_argument(args.input, "--input")

    async def work(client: Client) -> int:
        handle = await client.start(loaded.id, input_value, idempotency_key=args.idempotency_key)
        if args.wait:
            return await _print_result(client, handle.run_id, args)
        print(json.dumps({"run_id": handle.run_id}) if args.json else handle.run_id)
        return EXIT_OK

    return _on_client(args, work, also=loaded)


def run_status(args: argparse.Namespace) -> int:
    """Print the run's status (``--json``: its record)."""

    async def work(client: Client) -> int:
        record = await client.coordinator.record(args.run_id)
        print(json.dumps(_record(record), indent=2) if args.json else record.status)
        return EXIT_OK

    return _on_client(args, work)


def run_result(args: argparse.Namespace) -> int:
    """Print the run's result as it stands (``--wait``: its final result)."""
    return _on_client(args, lambda client: _print_result(client, args.run_id, args))


def run_cancel(args: argparse.Namespace) -> int:
    """Cancel the run (idempotent) and print its status."""

    async def work(client: Client) -> int:
        await client.cancel(args.run_id)
        print(await client.status(args.run_id))
        return EXIT_OK

    return _on_client(args, work)


def run_resume(args: argparse.Namespace) -> int:
    """Resume an awaiting node of the run and print the run's status."""
    output = json_argument(args.output, "--output")

    async def work(client: Client) -> int:
        node, token = (None, args.node) if args.token else (args.node, None)
        await client.resume(args.run_id, node, output=output, action=args.action, token=token)
        print(await client.status(args.run_id))
        return EXIT_OK

    return _on_client(args, work)


def run_runs(args: argparse.Namespace) -> int:
    """List runs, newest first: id, status, blueprint, created."""

    async def work(client: Client) -> int:
        page = await client.list_runs(status=args.status, limit=args.limit)
        if args.json:
            print(json.dumps([_record(r) for r in page.runs], indent=2))
            return EXIT_OK
        for r in page.runs:
            created = datetime.fromtimestamp(r.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
            blueprint = f"{r.blueprint_id}@{r.blueprint_version}"
            print(f"{r.run_id}  {r.status:<9}  {blueprint:<24}  {created}Z")
        return EXIT_OK

    return _on_client(args, work)


def _record(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "status": record.status,
        "blueprint": record.blueprint_id,
        "version": record.blueprint_version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "errors": list(record.errors),
        "parent": list(record.parent) if record.parent else None,
    }
