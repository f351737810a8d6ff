"""``flowcraft worker --log-level INFO --log-format json`` on RabbitMQ + PostgreSQL + Redis.

A worker process runs a blueprint whose middle node fails once and is retried; its stderr must
be JSON lines only, with one line per node outcome carrying the run, node, attempt, blueprint,
version and duration, as the installed command writes them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from flowcraft.core import dump_blueprint
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend

ROOT = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))


def _blueprint(tmp_path: Path) -> Path:
    blueprint = bp(
        "logged",
        [
            n("S", "suite.const", value=7),
            n("F", "suite.fail", times=1, config={"retry": {"max_attempts": 2}}),
            n("T", "suite.echo"),
        ],
        [e("S", "F"), e("F", "T")],
    )
    path = tmp_path / "logged.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    return path


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    """Delete the namespace's queues, tables and keys."""
    await factory.destroy(await factory.create(namespace))


def _flowcraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWCRAFT, *args], capture_output=True, text=True, cwd=ROOT, timeout=90, check=False
    )


def test_a_worker_logs_each_node_as_one_json_line(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str
) -> None:
    path = _blueprint(tmp_path)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    backend = [
        "--backend", "rabbitmq", "--option", f"amqp_url={rabbitmq_url}",
        "--option", f"postgres_dsn={postgres_url}", "--option", f"redis_url={redis_url}",
        "--namespace", namespace,
    ]  # fmt: skip
    stderr = tmp_path / "worker.err"
    with stderr.open("wb") as log:
        worker = subprocess.Popen(
            [FLOWCRAFT, "worker", *backend, "--registry", "flowcraft.core.testing.nodes:REGISTRY",
             "--blueprint", str(path), "--log-level", "INFO", "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
        )  # fmt: skip
        try:
            started = _flowcraft("start", str(path), *backend)
            assert started.returncode == 0, started.stderr
            run_id = started.stdout.strip()
            pinned = ["--blueprint", str(path)]
            final = _flowcraft("result", run_id, *backend, *pinned, "--wait", "--timeout", "60")
            assert final.returncode == 0, final.stderr
        finally:
            worker.terminate()
            worker.wait(30)
            factory = RabbitMqBackend(
                amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url
            )
            asyncio.run(_drop(factory, namespace))
    lines = [json.loads(line) for line in stderr.read_text().splitlines()]  # JSON only
    ours = [line for line in lines if line.get("run_id") == run_id]
    nodes = [
        (line["event"], line["node_id"], line["attempt"]) for line in ours if "node_id" in line
    ]
    assert nodes == [
        ("node.succeeded", "S", 1),
        ("node.retrying", "F", 1),
        ("node.succeeded", "F", 2),
        ("node.succeeded", "T", 1),
    ]  # at INFO: no node.started lines, one line per node outcome
    assert ours[-1]["event"] == "run.completed"
    for line in ours:
        assert (line["blueprint"], line["blueprint_version"]) == ("logged", "1")
        assert line["logger"] == "flowcraft.lifecycle"
    succeeded = [line for line in ours if line["event"] == "node.succeeded"]
    assert all(0 <= line["duration"] < 30 for line in succeeded)
    assert " succeeded in " in succeeded[0]["message"]
    retry = next(line for line in ours if line["event"] == "node.retrying")
    assert (retry["level"], retry["error_type"], retry["error"]) == (
        "WARNING",
        "RuntimeError",
        "boom",
    )
    assert any(line["message"].startswith("flowcraft worker ") for line in lines)
