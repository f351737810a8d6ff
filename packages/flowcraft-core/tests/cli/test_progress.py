"""The live progress of the installed ``flowcraft run`` on a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

NODES = """
import asyncio

async def nap(ctx):
    await asyncio.sleep(1.5)
    return 1

async def flaky(ctx):
    if ctx.attempt == 1:
        raise RuntimeError("the first try fails")
    return 2

registry = {"nap": nap, "flaky": flaky}
"""
BLUEPRINT = """id: live
nodes:
  - {id: slow, uses: nap}
  - {id: retry, uses: flaky, config: {retry: {max_attempts: 2}}}
edges:
  - {source: slow, target: retry}
"""


def _run_on_a_terminal(cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pty (a terminal: live progress); return code, stdout, screen."""
    command = Path(sys.executable).with_name("flowcraft")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(command), "run", "live.yaml", "--registry", "live_nodes:registry"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    out, _ = process.communicate(timeout=10)
    os.close(leader)
    return process.returncode, out, screen.decode(errors="replace")


def test_the_live_line_moves_while_a_node_runs(tmp_path: Path) -> None:
    (tmp_path / "live_nodes.py").write_text(NODES)
    (tmp_path / "live.yaml").write_text(BLUEPRINT)
    code, out, screen = _run_on_a_terminal(tmp_path)
    assert code == 0, screen
    assert json.loads(out)["output"] == 2
    frames = [f for f in screen.split("\r") if "done" in f]
    while_slow = [f for f in frames if "running: slow" in f]
    clocks = {m.group(1) for f in while_slow if (m := re.search(r"(\d+\.\d)s", f))}
    assert len(clocks) >= 3, f"the clock stood still while a node ran: {while_slow}"
    assert any("0/2 done" in f for f in while_slow)
    assert any("2/2 done" in f for f in frames)
    assert "retry retrying (attempt 1): RuntimeError: the first try fails" in screen
