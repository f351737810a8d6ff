"""Run management with the installed ``flowcraft`` command against RabbitMQ + PostgreSQL + Redis.

A worker process runs the blueprint; every other step is a ``flowcraft`` command, as a user
would type it: start, status, runs, resume (a wrong action refused), result --wait, cancel.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowcraft.core import dump_blueprint
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend

ROOT = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))


@pytest.fixture
def cli(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str
) -> Iterator[tuple[list[str], Path]]:
    """The backend arguments of a fresh namespace, and the blueprint file; a worker runs."""
    blueprint = bp(
        "review",
        [n("W", "flowcraft.wait"), n("OK", "echo"), n("NO", "echo")],
        [e("W", "OK", action="approve"), e("W", "NO", action="reject")],
    )
    path = tmp_path / "review.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    namespace = f"t{uuid.uuid4().hex[:10]}"
    backend = [
        "--backend", "rabbitmq", "--option", f"amqp_url={rabbitmq_url}",
        "--option", f"postgres_dsn={postgres_url}", "--option", f"redis_url={redis_url}",
        "--namespace", namespace,
    ]  # fmt: skip
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [FLOWCRAFT, "worker", *backend, "--registry", "flowcraft.core.testing.nodes:REGISTRY",
         "--blueprint", str(path)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        yield backend, path
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
        factory = RabbitMqBackend(
            amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url
        )
        asyncio.run(_drop(factory, namespace))


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    """Delete the namespace's queues, tables and keys."""
    await factory.destroy(await factory.create(namespace))


def _flowcraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWCRAFT, *args], capture_output=True, text=True, cwd=ROOT, timeout=90, check=False
    )


def _status(backend: list[str], run_id: str) -> str:
    done = _flowcraft("status", run_id, *backend)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _until(backend: list[str], run_id: str, status: str) -> None:
    deadline = time.monotonic() + 60
    while (now := _status(backend, run_id)) != status:
        assert time.monotonic() < deadline, f"run {run_id} stayed {now}, never {status}"
        time.sleep(0.2)


def test_start_status_runs_resume_result_and_cancel(cli: tuple[list[str], Path]) -> None:
    backend, path = cli
    started = _flowcraft("start", str(path), *backend, "--input", '{"doc": 1}')
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    _until(backend, run_id, "awaiting")
    listed = _flowcraft("runs", *backend, "--status", "awaiting", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    pinned = ["--blueprint", str(path)]
    waiting = json.loads(_flowcraft("result", run_id, *backend, *pinned).stdout)
    assert waiting["awaiting"][0]["actions"] == ["approve", "reject"]
    wrong = _flowcraft("resume", run_id, "W", *backend, *pinned, "--action", "maybe")
    assert wrong.returncode == 2
    assert "approve, reject" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    unpinned = _flowcraft("resume", run_id, "W", *backend, "--action", "approve")
    assert unpinned.returncode == 2
    assert "--blueprint" in unpinned.stderr
    resumed = _flowcraft(
        "resume", run_id, "W", *backend, *pinned, "--action", "approve", "--output", '"yes"'
    )
    assert resumed.returncode == 0, resumed.stderr
    final = _flowcraft("result", run_id, *backend, *pinned, "--wait", "--timeout", "60")
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["outputs"] == {"W": "yes", "OK": "yes"}
    other = _flowcraft("start", str(path), *backend).stdout.strip()
    _until(backend, other, "awaiting")
    cancelled = _flowcraft("cancel", other, *backend, *pinned)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, "cancelled")
    missing = _flowcraft("status", "no-such-run", *backend)
    assert missing.returncode == 1
    assert "no-such-run" in missing.stderr
    assert "Traceback" not in missing.stderr
