"""``--expression-budget`` reaches the workers: a worker process decides with the budget it got.

One blueprint whose edge condition is a nested comprehension over the run's input (3,000
numbers: about nine million comparisons, a second or two of CEL work). A worker started with
``--expression-budget 30`` completes the run; one with the default budget (0.1 s) fails it
with an ExpressionError that names the budget, and stays up for the next job.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flowcraft.core import dump_blueprint
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend

ROOT = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))
NESTED = "result.all(x, result.all(y, x != -1))"
INPUT = json.dumps(list(range(3000)))

Start = Callable[[list[str]], list[str]]


@pytest.fixture
def worker(tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str) -> Iterator[Start]:
    """Starts a worker with extra arguments on a fresh namespace; returns the backend args."""
    blueprint = bp("nested", [n("A", "echo"), n("B", "echo")], [e("A", "B", condition=NESTED)])
    path = tmp_path / "nested.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    logs = []

    def start(extra: list[str]) -> list[str]:
        namespace = f"t{uuid.uuid4().hex[:10]}"
        backend = [
            "--backend", "rabbitmq", "--option", f"amqp_url={rabbitmq_url}",
            "--option", f"postgres_dsn={postgres_url}", "--option", f"redis_url={redis_url}",
            "--namespace", namespace, "--blueprint", str(path),
        ]  # fmt: skip
        log = (tmp_path / f"worker-{namespace}.log").open("wb")
        logs.append(log)
        process = subprocess.Popen(
            [FLOWCRAFT, "worker", *backend, "--registry",
             "flowcraft.core.testing.nodes:REGISTRY", *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        started.append((process, namespace))
        return backend

    yield start
    factory = RabbitMqBackend(amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url)
    for process, namespace in started:
        process.terminate()
        process.wait(30)
        asyncio.run(_drop(factory, namespace))
    for log in logs:
        log.close()


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    await factory.destroy(await factory.create(namespace))


def _run(backend: list[str]) -> dict[str, object]:
    """Start a run with the big input and wait for its result (installed commands)."""
    started = _flowcraft("start", str(backend[-1]), *backend, "--input", INPUT)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    final = _flowcraft("result", run_id, *backend, "--wait", "--timeout", "60")
    assert "Traceback" not in final.stderr
    result: dict[str, object] = json.loads(final.stdout)
    return result


def _flowcraft(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWCRAFT, *args], capture_output=True, text=True, cwd=ROOT, timeout=90, check=False
    )


def test_a_worker_evaluates_within_the_budget_it_was_given(worker: Start) -> None:
    generous = _run(worker(["--expression-budget", "30"]))
    assert generous["status"] == "completed", generous
    outputs = generous["outputs"]
    assert isinstance(outputs, dict)
    assert outputs.keys() == {"A", "B"}

    default = _run(worker([]))
    assert default["status"] == "failed", default
    errors = default["errors"]
    assert isinstance(errors, list)
    assert len(errors) == 1
    message = json.dumps(errors[0])
    assert "budget of 0.1 s" in message, message
    assert NESTED in message


def test_a_budget_that_is_not_positive_is_a_usage_error(worker: Start) -> None:
    backend = worker([])
    refused = _flowcraft("worker", *backend, "--registry", "flowcraft.core.testing.nodes:REGISTRY",
                         "--expression-budget", "0")  # fmt: skip
    assert refused.returncode == 2
    assert "--expression-budget wants seconds > 0, got 0" in refused.stderr
    assert "Traceback" not in refused.stderr
