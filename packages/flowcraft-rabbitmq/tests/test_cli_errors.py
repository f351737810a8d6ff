"""``flowcraft worker --backend rabbitmq`` as a user meets its mistakes (the installed command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
APPROVAL = ("--registry", "examples.approval.nodes:registry",
            "--blueprint", "examples/approval/approval.yaml")  # fmt: skip


def _worker(*options: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("flowcraft")
    return subprocess.run(
        [str(command), "worker", "--backend", "rabbitmq", *options, *APPROVAL],
        capture_output=True, text=True, cwd=ROOT, timeout=90, check=False,
    )  # fmt: skip


def test_an_unknown_option_names_the_accepted_ones() -> None:
    done = _worker("--option", "amqp=x")
    assert done.returncode == 2
    assert "has no option 'amqp' (did you mean 'amqp_url'?)" in done.stderr
    assert "its options: amqp_url, postgres_dsn, redis_url" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_is_named_without_its_credentials() -> None:
    done = _worker("--option", "postgres_dsn=postgresql://ann:s3cret@127.0.0.1:1/flow")
    assert done.returncode == 1
    assert "flowcraft: backend error: PostgreSQL at 127.0.0.1:1/flow" in done.stderr
    assert "FLOWCRAFT_POSTGRES_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
