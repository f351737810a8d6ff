"""``tools/services restart NAME`` as the README gives it: one service, clients connected.

SLOW-ish (a PostgreSQL restart, a few seconds); it disturbs whatever else uses that PostgreSQL
at the moment, like the RabbitMQ restart test does for RabbitMQ.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

#: Restarts or disturbs shared servers (or kills their connections): runs alone, after the
#: parallel part of the integration run (see hatch.toml).
pytestmark = pytest.mark.exclusive

ROOT = Path(__file__).resolve().parents[1]


def _services(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "tools/services", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_restart_of_one_service_with_clients_connected(postgres_url: str, redis_url: str) -> None:
    before = _services("status", "redis")
    assert before.returncode == 0, before.stdout
    with psycopg.connect(postgres_url, autocommit=True) as held:  # a connected client
        held.execute("SELECT 1")
        done = _services("restart", "postgres")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.split()[0] == "postgres"  # postgres only, not all eight
        assert "redis" not in done.stdout
    with psycopg.connect(postgres_url, autocommit=True) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    after = _services("status", "redis")  # the others were left alone
    assert after.returncode == 0
    assert after.stdout.split()[2] == before.stdout.split()[2]  # same pid
    refused = _services("logs", "redis", "postgres")
    assert refused.returncode == 2
    assert "exactly one service" in refused.stderr
