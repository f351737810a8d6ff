"""A config file drives the installed ``flowcraft`` command against RabbitMQ + PostgreSQL + Redis.

The file names the backend, a namespace and all three URLs, the PostgreSQL one pointing at a
closed port: ``FLOWCRAFT_POSTGRES_URL`` set in the environment beats the file (the run starts),
a ``--option`` beats the environment, ``FLOWCRAFT_NAMESPACE`` beats the file's namespace, and
without the variable the file's broken URL is used (the error names its host and port).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowcraft.rabbitmq import RabbitMqBackend

FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))
CLOSED = "postgresql://flowcraft:s3cret@127.0.0.1:1/flowcraft"
BLUEPRINT = "id: hold\nnodes:\n  - {id: W, uses: flowcraft.wait}\n"
SETTINGS_ENV = (
    "FLOWCRAFT_CONFIG",
    "FLOWCRAFT_BACKEND",
    "FLOWCRAFT_NAMESPACE",
    "FLOWCRAFT_RABBITMQ_URL",
    "FLOWCRAFT_POSTGRES_URL",
    "FLOWCRAFT_REDIS_URL",
)


@pytest.fixture
def project(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str
) -> Iterator[tuple[Path, str]]:
    """A directory with flowcraft.toml and a blueprint; its namespaces are dropped after."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    (tmp_path / "flowcraft.toml").write_text(
        f'[backend]\nname = "rabbitmq"\nnamespace = "{namespace}"\n\n[backend.options]\n'
        f'amqp_url = "{rabbitmq_url}"\npostgres_dsn = "{CLOSED}"\nredis_url = "{redis_url}"\n'
    )
    (tmp_path / "hold.yaml").write_text(BLUEPRINT)
    try:
        yield tmp_path, namespace
    finally:
        factory = RabbitMqBackend(
            amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url
        )
        for dropped in (namespace, f"{namespace}x"):
            asyncio.run(_drop(factory, dropped))


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    await factory.destroy(await factory.create(namespace))


def _flowcraft(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    return subprocess.run(
        [FLOWCRAFT, *args], capture_output=True, text=True, cwd=cwd, env={**clean, **env},
        timeout=90, check=False,
    )  # fmt: skip


def _run_ids(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [run["run_id"] for run in json.loads(done.stdout)]


def test_the_environment_beats_the_file_and_the_command_line_beats_both(
    project: tuple[Path, str], postgres_url: str
) -> None:
    cwd, namespace = project
    started = _flowcraft(cwd, "start", "hold.yaml", FLOWCRAFT_POSTGRES_URL=postgres_url)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    same = _flowcraft(cwd, "runs", "--json", FLOWCRAFT_POSTGRES_URL=postgres_url)
    assert _run_ids(same) == [run_id]  # the file's namespace
    other = _flowcraft(cwd, "runs", "--json", FLOWCRAFT_POSTGRES_URL=postgres_url,
                       FLOWCRAFT_NAMESPACE=f"{namespace}x")  # fmt: skip
    assert _run_ids(other) == []
    again = _flowcraft(cwd, "start", "hold.yaml", "--option", f"postgres_dsn={postgres_url}",
                       FLOWCRAFT_POSTGRES_URL=CLOSED)  # fmt: skip
    assert again.returncode == 0, again.stderr
    listed = _run_ids(_flowcraft(cwd, "runs", "--json", "--namespace", namespace,
                                 FLOWCRAFT_POSTGRES_URL=postgres_url))  # fmt: skip
    assert sorted(listed) == sorted([run_id, again.stdout.strip()])


def test_without_the_variable_the_file_s_url_is_used_and_named(project: tuple[Path, str]) -> None:
    cwd, _namespace = project
    done = _flowcraft(cwd, "start", "hold.yaml")
    assert done.returncode == 1
    assert "PostgreSQL at 127.0.0.1:1/flowcraft" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr  # credentials never printed
