"""Building blocks of an adapter's fault tests: worker *processes*, cut connections, a journal.

ADAPTERS.md asks every backend for fault tests end to end with worker processes: a worker
SIGKILLed mid-node, servers unreachable or restarted mid-run, a node longer than the
visibility/lease window, poison messages; all runs complete, nothing is committed twice,
nothing is lost. This module holds the backend-neutral parts, so an adapter's fault test is its
scenario plus what only its servers can say (queue depths, consumer lag, dead letters):

* :func:`process_session`: a fresh namespace of a backend (by name and options, as
  ``flowcraft worker`` opens it), this process the client, and :class:`WorkerProcesses`
  (``flowcraft worker --backend <name>``: start, :meth:`~WorkerProcesses.kill` (SIGKILL),
  :meth:`~WorkerProcesses.terminate` (SIGTERM), stop, their logs and surfaced errors).
* ``fault.step`` (:func:`step`), a non-idempotent node: each execution draws a fresh ticket
  and notes it in the :class:`Journal`, a file every process appends to. :data:`REGISTRY`
  (the suite's nodes and ``fault.step``) is what the workers load: ``--registry
  flowcraft.core.testing.faults:REGISTRY``. :func:`chain` builds ``s0 -> s1 -> ...`` of it.
* :func:`check_run`: completed, and every step committed once (one execution's ticket in its
  output, the next node's input and its context write).
* :class:`TcpProxy`: a loopback proxy whose connections are cut at once and refused for a while.
* :func:`until`, :func:`exited`, :func:`results` (with a diagnosis of the unfinished runs).

Example (the adapter supplies the options and its own "nothing left" check)::

    blueprint = chain("sigkill", 0.1, 3.0, 0.1)
    async with process_session("sqs", options, blueprint, tmp_path, lease=2.0) as (s, workers):
        victim = workers.start()
        handle = await s.start("sigkill", "in")
        await until("s1 runs", 30, lambda: bool(workers.journal.steps(handle.run_id, "s1")))
        await workers.kill(victim)
        workers.start()
        (result,) = await results([handle], 30, store=s.backend.store)
    check_run(result, blueprint, workers.journal, "in")

Nothing here imports pytest; failures are ``AssertionError`` with what differed.
"""

from flowcraft.core.testing.faults._journal import JOURNAL_ENV, Journal, note, parse_journal
from flowcraft.core.testing.faults._nodes import REGISTRY, chain, check_run, step
from flowcraft.core.testing.faults._processes import (
    REGISTRY_SPEC,
    WorkerProcesses,
    exited,
    surfaced_errors,
    worker_command,
)
from flowcraft.core.testing.faults._proxy import TcpProxy
from flowcraft.core.testing.faults._session import process_session
from flowcraft.core.testing.faults._waiting import Describe, describe_state, results, until

__all__ = [
    "JOURNAL_ENV",
    "REGISTRY",
    "REGISTRY_SPEC",
    "Describe",
    "Journal",
    "TcpProxy",
    "WorkerProcesses",
    "chain",
    "check_run",
    "describe_state",
    "exited",
    "note",
    "parse_journal",
    "process_session",
    "results",
    "step",
    "surfaced_errors",
    "until",
    "worker_command",
]
