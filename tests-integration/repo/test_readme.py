"""The README's usage example runs and prints what it says (in a child process)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _block(markdown: str, heading: str) -> str:
    section = markdown.split(f"## {heading}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, f"no python block under {heading!r}"
    return match.group(1)


def test_using_it_example_runs() -> None:
    code = _block((ROOT / "README.md").read_text(), "Using it")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "completed ok"
