"""The World suite's mutation check: the suite must fail on every broken ``InMemoryWorld``.

Each variant in ``world_mutants.MUTANTS`` breaks one guarantee (an event log with holes under
concurrent writers, a terminal run that accepts a transition, a step completed twice, a hook
token reused by a live hook, a wait completed twice, a stream that loses its EOF, a queue
without redelivery). The World suite runs on each in a child process (``-x``: the first
failing test kills the variant); a variant on which the whole suite passes survives, and
this test fails naming it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the mutants are a plugin module beside this file

from world_mutants import MUTANT_ENV, MUTANTS  # noqa: E402

ROOT = HERE.parents[1]
SUITE = ROOT / "tests-integration" / "world" / "test_world_conformance.py"
#: Variants run at once.
PARALLEL = 2


async def _run_suite(mutant: str) -> tuple[str, int, str]:
    env = {
        **os.environ,
        MUTANT_ENV: mutant,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", str(SUITE), "-x", "-q", "-p", "no:cacheprovider",
        "-p", "world_mutants", "--flowcraft-world-timeout", "20", "-o", "log_level=CRITICAL",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode is not None
    return mutant, process.returncode, output.decode(errors="replace")


async def _run_all() -> list[tuple[str, int, str]]:
    slots = asyncio.Semaphore(PARALLEL)

    async def one(mutant: str) -> tuple[str, int, str]:
        async with slots:
            return await _run_suite(mutant)

    return list(await asyncio.gather(*(one(mutant) for mutant in MUTANTS)))


def _verdict(code: int, output: str) -> str:
    if code == 1 and re.search(r"\b1 (failed|error)\b", output):
        return "killed"
    if code == 0:
        return "SURVIVED (the whole suite passed)"
    return f"broke the run instead of failing a test (exit {code})"


def test_every_broken_world_fails_the_suite() -> None:
    results = asyncio.run(_run_all())
    verdicts = {mutant: _verdict(code, output) for mutant, code, output in results}
    killers = {
        mutant: (re.findall(r"^(?:FAILED|ERROR) \S+::(\S+)", output, re.MULTILINE) or ["?"])[0]
        for mutant, _code, output in results
    }
    report = "\n".join(
        f"  {mutant}: {verdicts[mutant]} (by {killers[mutant]})" for mutant in sorted(verdicts)
    )
    print(f"World mutation check:\n{report}")
    survivors = [mutant for mutant, verdict in verdicts.items() if verdict != "killed"]
    tails = "\n\n".join(
        f"--- {mutant}\n{output[-3000:]}" for mutant, _c, output in results if mutant in survivors
    )
    assert not survivors, f"variants the World suite does not catch:\n{report}\n\n{tails}"
