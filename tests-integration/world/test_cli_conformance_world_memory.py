"""``flowcraft conformance --backend world-memory``, as the installed command runs it.

The command finds the backend through its entry point (``flowcraft.backends`` of
flowcraft-core) and runs the whole blueprint suite in a child pytest, from a directory
without a project file (the plugin's own defaults, as a user would run it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft.core.testing.suite import (
    test_ports_coordination,
    test_ports_notices,
    test_ports_results,
    test_ports_started,
)

#: The optional ports world-memory does not declare: their tests are strict expected failures.
_ABSENT = (test_ports_coordination, test_ports_started, test_ports_results, test_ports_notices)
_ABSENT_TESTS = [name for module in _ABSENT for name in vars(module) if name.startswith("test_")]


@pytest.mark.timeout(400)
def test_the_blueprint_suite_passes_on_world_memory_through_the_command(tmp_path: Path) -> None:
    command = Path(sys.executable).with_name("flowcraft")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    arguments = ["conformance", "--backend", "world-memory", "--", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [str(command), *arguments],
        capture_output=True, text=True, timeout=380, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) >= 100, summary
    # world-memory declares no coordination store, started runs, result reads or notices.
    assert counts.get("xfailed") == len(_ABSENT_TESTS), summary
    assert not {"failed", "error", "errors", "skipped", "xpassed"} & counts.keys(), summary
