"""`flowcraft run` (installed) with an expression too costly for its input: clear, on time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

NODES = """
def numbers(ctx):
    return {"l": list(range(10_000))}

def done(ctx):
    return "done"

registry = {"numbers": numbers, "done": done}
"""

BLUEPRINT = """
id: costly
nodes:
  - {id: make, uses: numbers}
  - {id: after, uses: done}
edges:
  - source: make
    target: after
    condition: "result.l.all(x, result.l.all(y, x != -1))"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "costly_nodes.py").write_text(NODES)
    (tmp_path / "costly.yaml").write_text(BLUEPRINT)
    return tmp_path


def _run(cwd: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    command = Path(sys.executable).with_name("flowcraft")
    began = time.monotonic()
    done = subprocess.run(
        [str(command), "run", "costly.yaml", "--registry", "costly_nodes:registry",
         "--no-watch", *extra],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done, time.monotonic() - began


def test_a_costly_condition_fails_the_run_within_the_timeout(project: Path) -> None:
    done, took = _run(project, "--timeout", "2")
    assert done.returncode == 1
    assert took < 10, f"the run took {took:.1f} s (the evaluation alone would take minutes)"
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    (error,) = result["errors"]  # the edge failed; --timeout never had to fire
    assert error["type"] == "ExpressionError"
    assert "budget of 0.1 s" in error["message"]
    assert "result.l.all(x, result.l.all(y, x != -1))" in error["message"]
    assert "Traceback" not in done.stderr


def test_the_budget_is_an_option(project: Path) -> None:
    done, _took = _run(project, "--expression-budget", "0.3", "--timeout", "5")
    result = json.loads(done.stdout)
    assert "budget of 0.3 s" in result["errors"][0]["message"]


def test_a_budget_that_is_no_number_of_seconds_is_a_usage_error(project: Path) -> None:
    done, _took = _run(project, "--expression-budget", "0")
    assert done.returncode == 2
    assert "--expression-budget" in done.stderr
    assert "Traceback" not in done.stderr
