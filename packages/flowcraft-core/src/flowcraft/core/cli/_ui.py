"""``flowcraft ui``: serve the web view of a backend's runs on 127.0.0.1.

    flowcraft ui --backend rabbitmq [--option K=V] [--blueprint FILE...] [--port 8765]
                 [--allow-actions] [--page-size 20]

The backend comes from the same places as every backend command's (``--backend``, ``--option``,
``--namespace``, the environment, a config file). Runs pinned to a blueprint given with
``--blueprint`` get their diagram and node table; others show their record only. Read-only
unless ``--allow-actions``: then each run page can cancel the run and resume its awaiting
nodes. Needs the ``ui`` extra: ``pip install 'flowcraft-core[ui]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flowcraft.core._distributed.client import Client
from flowcraft.core.cli._common import EXIT_OK, UsageError
from flowcraft.core.cli._config import BackendSettings
from flowcraft.core.cli._distributed import (
    backend_arguments,
    backend_factory,
    backend_settings,
    blueprint_set,
)

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_NEEDS = "flowcraft ui needs the ui extra: pip install 'flowcraft-core[ui]'"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the subcommand."""
    text = f"serve a web view of a backend's runs on {HOST}"
    parser = subcommands.add_parser("ui", help=text, description=text)
    backend_arguments(parser)
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0: any free port"
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="let the pages cancel runs and resume awaiting nodes (default: read-only)",
    )
    parser.add_argument("--page-size", type=int, default=20, help="runs per page (default 20)")
    parser.set_defaults(run=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM."""
    try:
        import uvicorn  # noqa: PLC0415 - the extra, on demand
        from flowcraft.core._ui import MERMAID_JS, create_app  # noqa: PLC0415
    except ImportError:
        raise UsageError(_NEEDS) from None
    if not MERMAID_JS.is_file():
        raise UsageError(
            f"{MERMAID_JS} is missing: reinstall flowcraft-core (its build fetches it)"
        )
    if not 1 <= args.page_size <= 200:
        raise UsageError(f"--page-size wants 1 to 200, got {args.page_size}")
    settings = backend_settings(args)
    factory = backend_factory(settings)
    blueprints = blueprint_set(args, None, required=False)
    sock = _listen(args.port)

    @asynccontextmanager
    async def open_client() -> AsyncIterator[Client]:
        backend = await factory.create(settings.namespace)
        try:
            async with Client(queue=backend.queue, store=backend.store, blueprints=blueprints) as c:
                yield c
        finally:
            await factory.close(backend)

    app = create_app(open_client, allow_actions=args.allow_actions, page_size=args.page_size)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    _announce(sock, settings, len(args.blueprint), allow_actions=args.allow_actions)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return EXIT_OK


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)  # browsers that come before the server is up wait in the backlog
    return sock


def _announce(
    sock: socket.socket, settings: BackendSettings, known: int, *, allow_actions: bool
) -> None:
    port = sock.getsockname()[1]
    mode = "cancel and resume allowed" if allow_actions else "read-only"
    print(
        f"flowcraft ui on http://{HOST}:{port}/ ({settings.name}/{settings.namespace}, {mode}, "
        f"{known} blueprint{'' if known == 1 else 's'})",
        file=sys.stderr,
        flush=True,
    )
