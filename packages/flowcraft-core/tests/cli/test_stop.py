"""Ctrl-C and ``--timeout`` of the installed ``flowcraft run``: quick, clean, with the reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SLOW = """
import asyncio, time

async def nap(ctx):
    print("started", flush=True)
    await asyncio.sleep(20)
    return "woke"

def block(ctx):
    print("started", flush=True)
    time.sleep(20)
    return "woke"

registry = {"nap": nap, "block": block}
"""


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    yield
    for process in list(_STARTED):
        if process.poll() is None:
            process.kill()
        process.communicate()
    _STARTED.clear()


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture
def slow(tmp_path: Path) -> Path:
    (tmp_path / "slow_nodes.py").write_text(SLOW)
    for uses in ("nap", "block"):
        (tmp_path / f"{uses}.yaml").write_text(f"id: {uses}\nnodes:\n  - {{id: a, uses: {uses}}}\n")
    return tmp_path


def _start(cwd: Path, blueprint: str, *extra: str) -> subprocess.Popen[str]:
    command = Path(sys.executable).with_name("flowcraft")
    process = subprocess.Popen(
        [str(command), "run", blueprint, "--registry", "slow_nodes:registry", "--no-watch", *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _STARTED.append(process)
    return process


def _wait_started(process: subprocess.Popen[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:  # what the node prints goes to stderr
        if "started" in line:
            return
    raise AssertionError("the node never started")


@pytest.mark.parametrize("blueprint", ["nap.yaml", "block.yaml"])
def test_ctrl_c_cancels_the_run_and_exits_130_at_once(slow: Path, blueprint: str) -> None:
    process = _start(slow, blueprint)
    _wait_started(process)
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=15)
    took = time.monotonic() - interrupted
    assert process.returncode == 130
    assert took < 10, f"the process ended {took:.1f} s after Ctrl-C (the node sleeps 20 s)"
    result = json.loads(out)
    assert result["status"] == "cancelled"
    assert result["errors"][-1]["type"] == "Interrupted"
    assert "cancelling the run" in err
    assert "Traceback" not in err


def test_a_second_ctrl_c_quits_without_a_traceback(slow: Path) -> None:
    process = _start(slow, "block.yaml")
    _wait_started(process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=15)
    assert process.returncode == 130
    assert "Traceback" not in err


def test_timeout_exits_on_time_with_the_reason(slow: Path) -> None:
    began = time.monotonic()
    process = _start(slow, "block.yaml", "--timeout", "1")
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - began
    assert process.returncode == 1
    assert took < 10, f"--timeout 1 ended the process after {took:.1f} s"
    result = json.loads(out)
    assert result["status"] == "cancelled"
    (reason,) = result["errors"]
    assert reason["type"] == "TimeoutError"
    assert "timed out after 1 s" in reason["message"]
    assert "Traceback" not in err
