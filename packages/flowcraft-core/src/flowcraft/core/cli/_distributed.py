"""``flowcraft worker``, ``flowcraft reconcile`` and ``flowcraft conformance``.

    flowcraft worker --backend rabbitmq --option dsn=... --registry app:registry --blueprint a.yaml
    flowcraft reconcile --backend rabbitmq --option dsn=... --blueprint a.yaml [--interval 30]
    flowcraft conformance --backend rabbitmq --option dsn=... [-- -k joins]

Backends are found by name in the ``flowcraft.backends`` entry-point group; ``--option
key=value`` pairs go to the backend factory. The backend's name, namespace and options may also
come from the environment or a config file (``--config``, ``$FLOWCRAFT_CONFIG``,
``./flowcraft.toml``; see ``_config``). The worker stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.reconciler import Reconciler
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.events import EventBus
from flowcraft.core.backends import (
    BACKEND_ENV,
    GROUP,
    OPTIONS_ENV,
    BackendOptionError,
    UnknownBackendError,
    installed_backends,
    load_backend_factory,
)
from flowcraft.core.cli import _config
from flowcraft.core.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    UsageError,
    add_expression_budget,
    expression_budget,
    read_blueprint,
    report,
)
from flowcraft.core.cli._logging import add_log_arguments, configure_logging
from flowcraft.core.cli._registry import import_implementations

#: What ``flowcraft conformance`` runs on (the ``testing`` extra).
_SUITE_NEEDS = ("pytest", "pytest_asyncio", "pytest_timeout")


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the three subcommands."""
    worker = subcommands.add_parser("worker", help="run a worker against a backend")
    backend_arguments(worker)
    worker.add_argument("--registry", metavar="MODULE:ATTR", required=True)
    worker.add_argument("--concurrency", type=int, default=8)
    worker.add_argument("--lease", type=float, default=30.0)
    worker.add_argument(
        "--copy-after",
        type=float,
        default=COPY_AFTER,
        metavar="SECONDS",
        help="hold back the queue message of an attempt this worker runs ahead this long "
        f"(default {COPY_AFTER:g}): one done by then is never sent; 0 sends each right away, "
        "so a worker killed at any time is recovered without the reconciler",
    )
    add_log_arguments(worker)
    worker.add_argument(
        "--otel",
        action="store_true",
        help="OpenTelemetry spans and metrics for node attempts, on the globally configured "
        "providers (pip install 'flowcraft-core[otel]'; configure the SDK in your registry "
        "module or with opentelemetry-instrument)",
    )
    worker.set_defaults(run=run_worker)
    reconcile = subcommands.add_parser("reconcile", help="re-enqueue the lost work of stalled runs")
    backend_arguments(reconcile)
    reconcile.add_argument("--stalled-after", type=float, default=60.0)
    reconcile.add_argument("--interval", type=float, help="repeat every SECONDS (default: once)")
    add_log_arguments(reconcile)
    reconcile.set_defaults(run=run_reconcile)
    backends = subcommands.add_parser("backends", help="list the installed backends")
    backends.add_argument("--json", action="store_true", help="print JSON")
    backends.set_defaults(run=run_backends)
    conformance = subcommands.add_parser("conformance", help="run the conformance suite")
    backend_selection_arguments(conformance, namespace=False)
    conformance.add_argument(
        "--duplicate", action="store_true", help="deliver every message twice in every test"
    )
    conformance.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")
    conformance.set_defaults(run=run_conformance)


def backend_selection_arguments(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    """Add ``--backend``, ``--option``, ``--config`` (and ``--namespace``); explain their order.

    Their values are resolved by :func:`backend_settings` (command line > environment > config
    file > defaults); the precedence and the file's shape go into the command's ``--help``.
    """
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _config.HELP_EPILOG
    parser.add_argument(
        "--backend",
        help=f"backend name (`flowcraft backends` lists them; default: ${_config.BACKEND_ENV}, "
        "else the config file's [backend] name)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option (repeatable; an unknown key lists the accepted ones); beats the "
        "adapter's environment variable for it (e.g. FLOWCRAFT_RABBITMQ_URL, "
        "FLOWCRAFT_POSTGRES_URL, FLOWCRAFT_REDIS_URL for rabbitmq), which beats the config file",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"a TOML config file (default: ${_config.CONFIG_ENV}, else ./{_config.DEFAULT_FILE} "
        "if it exists)",
    )
    if namespace:
        parser.add_argument(
            "--namespace",
            help="queue, table and key prefix, as the workers' (default: "
            f"${_config.NAMESPACE_ENV}, else the config file's, else {_config.DEFAULT_NAMESPACE})",
        )


def backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the backend selection, ``--blueprint`` and ``--dialect``.

    Shared by every command that talks to a backend (``worker``, ``reconcile``, ``start``, ...).
    """
    backend_selection_arguments(parser)
    parser.add_argument(
        "--blueprint",
        action="append",
        default=[],
        metavar="FILE",
        help="a blueprint runs may be pinned to (repeatable)",
    )
    parser.add_argument("--dialect", choices=["auto", "python", "typescript"], default="auto")
    add_expression_budget(parser)


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option wants KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def backend_settings(args: argparse.Namespace) -> _config.BackendSettings:
    """The backend's name, namespace and options: command line > environment > file > defaults.

    Raises:
        UsageError: No backend is named, or the config file is unreadable or wrong.
    """
    path = _config.config_path(args.config, os.environ, Path.cwd())
    file = _config.read_config(path) if path is not None else None
    options = _options(args.option)
    name = _config.choose_name(args.backend, os.environ, file)
    return _config.resolve(
        name=name,
        namespace=getattr(args, "namespace", None),
        options=options,
        environ=os.environ,
        file=file,
        option_environment=_option_environment(name),
    )


def _option_environment(name: str) -> Mapping[str, str]:
    """The variables the named backend reads its options from (its ``option_environment``)."""
    for ep in entry_points(group=GROUP, name=name):
        declared = getattr(ep.load(), "option_environment", None)
        return declared if isinstance(declared, Mapping) else {}
    return {}  # an unknown name: load_backend_factory says so


def backend_factory(settings: _config.BackendSettings) -> Any:  # noqa: ANN401 - an adapter's
    """The named backend's factory with its options (a usage error if unknown)."""
    try:
        return load_backend_factory(settings.name, settings.options)
    except UnknownBackendError as exc:
        raise UsageError(str(exc)) from None
    except BackendOptionError as exc:
        raise UsageError(f"{exc}{settings.blame()}") from None


def blueprint_set(
    args: argparse.Namespace, registry: Mapping[str, object] | None, *, required: bool = True
) -> BlueprintSet:
    """The ``--blueprint`` files, validated (problems reported, then a usage error)."""
    loaded: list[Blueprint] = []
    for path in args.blueprint:
        found = read_blueprint(argparse.Namespace(file=path, dialect=args.dialect), registry)
        if isinstance(found, list):
            report(found, as_json=False)
            raise UsageError(f"{path}: invalid blueprint")
        loaded.append(found)
    if required and not loaded:
        raise UsageError("give at least one --blueprint FILE")
    return BlueprintSet(loaded, expression_budget=expression_budget(args))


def run_worker(args: argparse.Namespace) -> int:
    """Consume jobs until SIGTERM/SIGINT."""
    copy_after = float(args.copy_after)
    if not copy_after >= 0:
        raise UsageError(f"--copy-after wants seconds >= 0, got {copy_after:g}")
    registry = import_implementations(args.registry)
    blueprints = blueprint_set(args, registry)
    settings = backend_settings(args)
    factory = backend_factory(settings)

    events = EventBus()
    configure_logging(args, events)
    middleware = _instrumentation(events) if args.otel else []

    async def main() -> None:
        backend = await factory.create(settings.namespace)
        worker = Worker(
            queue=backend.queue,
            store=backend.store,
            registry=registry,
            blueprints=blueprints,
            coordination=backend.coordination,
            concurrency=args.concurrency,
            lease=args.lease,
            events=events,
            middleware=middleware,
            copy_after=copy_after,
        )
        worker.install_signal_handlers()
        where = f"{settings.name}/{settings.namespace}"
        started = f"flowcraft worker {worker.id} on {where}"
        if args.log_format == "json":  # every line of stderr is a JSON object
            logging.getLogger("flowcraft.worker").info(started)
        else:
            print(started, file=sys.stderr)
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # collector's full passes (they scanned all of it, tens of ms each, mid-step).
        gc.freeze()
        try:
            await worker.run()
        finally:
            await factory.close(backend)

    asyncio.run(main())
    return EXIT_OK


def _instrumentation(events: EventBus) -> list[object]:
    """``--otel``: the OpenTelemetry middleware, observing ``events`` (a usage error if absent)."""
    try:
        from flowcraft.core.otel import Instrumentation  # noqa: PLC0415 - the extra, on demand
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    instrumentation = Instrumentation()
    instrumentation.observe(events)
    return [instrumentation]


def run_reconcile(args: argparse.Namespace) -> int:
    """One pass (or passes every ``--interval``); prints the stats as JSON."""
    blueprints = blueprint_set(args, None)
    settings = backend_settings(args)
    factory = backend_factory(settings)

    events = EventBus()
    configure_logging(args, events)

    async def main() -> None:
        backend = await factory.create(settings.namespace)
        reconciler = Reconciler(
            queue=backend.queue,
            store=backend.store,
            blueprints=blueprints,
            stalled_after=args.stalled_after,
            events=events,
        )
        try:
            if args.interval:
                await reconciler.run_forever(args.interval)
            else:
                print(json.dumps((await reconciler.run()).as_dict()))
        finally:
            await factory.close(backend)

    asyncio.run(main())
    return EXIT_OK


def run_backends(args: argparse.Namespace) -> int:
    """One line per installed backend: name, distribution and version, capabilities."""
    found = installed_backends()
    if args.json:
        rows = [{**dataclasses.asdict(b), "capabilities": sorted(b.capabilities)} for b in found]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for b in found:
        caps = ", ".join(sorted(b.capabilities)) or "-"
        provided = f"{b.distribution} {b.version}"
        print(f"{b.name:<12} {provided:<28} capabilities: {caps}")
    return EXIT_OK


def run_conformance(args: argparse.Namespace) -> int:
    """Run the conformance suite against the named backend with pytest (a child process)."""
    settings = backend_settings(args)
    backend_factory(settings)  # fail early with a clear message for unknown backends
    missing = [name for name in _SUITE_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"the conformance suite needs {', '.join(missing)}: "
            "pip install 'flowcraft-core[testing]'"
        )
    env = {**os.environ, BACKEND_ENV: settings.name, OPTIONS_ENV: json.dumps(settings.options)}
    extra = [a for a in args.pytest_args if a != "--"]
    if args.duplicate:
        extra.insert(0, "--flowcraft-duplicate")
    command = [
        sys.executable, "-m", "pytest", "--pyargs", "flowcraft.core.testing.suite",
        "-p", "flowcraft.core.testing.plugin", "-p", "no:cacheprovider",
        "-W", "ignore::pytest.PytestAssertRewriteWarning", *extra,
    ]  # fmt: skip
    code = subprocess.run(command, env=env, check=False).returncode
    return EXIT_OK if code == 0 else EXIT_PROBLEMS
