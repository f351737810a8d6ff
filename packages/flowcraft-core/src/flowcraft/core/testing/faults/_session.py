"""A fault test's session: a fresh namespace, this process the client, workers as processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from flowcraft.core import Blueprint, dump_blueprint
from flowcraft.core.backends import load_backend_factory
from flowcraft.core.testing.faults._journal import JOURNAL_ENV, Journal
from flowcraft.core.testing.faults._nodes import REGISTRY
from flowcraft.core.testing.faults._processes import WorkerProcesses
from flowcraft.core.testing.harness import Harness, Session


@contextlib.asynccontextmanager
async def process_session(
    backend: str,
    options: Mapping[str, object],
    blueprint: Blueprint,
    directory: Path,
    *,
    lease: float,
    grace: float = 20.0,
    pythonpath: Sequence[Path] = (),
    note_here: bool = False,
) -> AsyncIterator[tuple[Session, WorkerProcesses]]:
    """A session on a fresh namespace of ``backend``; this process the client, no worker yet.

    The client's backend is opened as ``flowcraft worker`` opens the workers': the named
    backend's factory with ``options`` (as strings). ``blueprint`` is written to
    ``directory/<id>.yaml`` for the workers, the journal is ``directory/journal.jsonl``, and
    the :class:`WorkerProcesses` (none started) run ``--backend backend`` with the same options
    on the session's namespace (``backend.extra["namespace"]``, the adapters' convention).
    ``note_here``: this process notes in the journal too, for the session's length.

    On exit the worker processes are stopped (their logs printed), then the namespace is
    destroyed.
    """
    texts = {name: str(value) for name, value in options.items()}
    path = directory / f"{blueprint.id}.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    harness = Harness(load_backend_factory(backend, texts))
    async with harness.session(blueprint, workers=0, registry=REGISTRY) as session:
        workers = WorkerProcesses(backend=backend, options=texts,
                                  namespace=_namespace(session, backend), blueprint=path,
                                  directory=directory, lease=lease,
                                  journal=Journal(directory / "journal.jsonl"),
                                  pythonpath=pythonpath, grace=grace)  # fmt: skip
        if note_here:
            os.environ[JOURNAL_ENV] = str(workers.journal.path)
        try:
            yield session, workers
        finally:
            await workers.stop()
            if note_here:
                os.environ.pop(JOURNAL_ENV, None)


def _namespace(session: Session, backend: str) -> str:
    namespace = session.backend.extra.get("namespace")
    if not isinstance(namespace, str):
        raise TypeError(
            f"backend {backend!r} keeps no namespace in Backend.extra['namespace']: worker "
            "processes cannot be pointed at the session's namespace"
        )
    return namespace
