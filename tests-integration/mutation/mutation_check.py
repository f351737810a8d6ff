"""Run a conformance suite on each broken variant of a backend and judge each variant.

Shared by the blueprint suite's check (``test_mutation.py``) and the World suite's
(``test_world_mutation.py``). Each variant runs the whole suite in a child process with ``-x``
(the first failing test kills it), with the variant's name in an environment variable that
its pytest plugin (loaded with ``-p``) reads. A variant on which the whole suite passes
survives; one that breaks the run instead of failing a test counts as not killed either.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One suite and its variants.

    Attributes:
        name: What is checked, for the report ("World suite").
        suite: The test module that runs the suite.
        plugin: The pytest plugin module (beside this file) that installs a variant.
        env: The environment variable naming the variant to install.
        mutants: The variants' names.
        options: Extra pytest options (the suite's per-test timeout).
        parallel: Variants run at once.
    """

    name: str
    suite: Path
    plugin: str
    env: str
    mutants: Sequence[str]
    options: Sequence[str] = ()
    parallel: int = 2


async def _run_suite(check: Check, mutant: str) -> tuple[str, int, str]:
    env = {
        **os.environ,
        check.env: mutant,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", str(check.suite), "-x", "-q", "-p", "no:cacheprovider",
        "-p", check.plugin, *check.options, "-o", "log_level=CRITICAL",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode is not None
    return mutant, process.returncode, output.decode(errors="replace")


async def _run_all(check: Check) -> list[tuple[str, int, str]]:
    slots = asyncio.Semaphore(check.parallel)

    async def one(mutant: str) -> tuple[str, int, str]:
        async with slots:
            return await _run_suite(check, mutant)

    return list(await asyncio.gather(*(one(mutant) for mutant in check.mutants)))


def _verdict(code: int, output: str) -> str:
    if code == 1 and re.search(r"\b1 (failed|error)\b", output):
        return "killed"
    if code == 0:
        return "SURVIVED (the whole suite passed)"
    return f"broke the run instead of failing a test (exit {code})"


def assert_every_mutant_is_killed(check: Check) -> None:
    """Run the suite on every variant; fail naming each one the suite does not catch."""
    results = asyncio.run(_run_all(check))
    verdicts = {mutant: _verdict(code, output) for mutant, code, output in results}
    killers = {
        mutant: (re.findall(r"^(?:FAILED|ERROR) \S+::(\S+)", output, re.MULTILINE) or ["?"])[0]
        for mutant, _code, output in results
    }
    report = "\n".join(
        f"  {mutant}: {verdicts[mutant]} (by {killers[mutant]})" for mutant in sorted(verdicts)
    )
    print(f"{check.name} mutation check:\n{report}")
    survivors = [mutant for mutant, verdict in verdicts.items() if verdict != "killed"]
    tails = "\n\n".join(
        f"--- {mutant}\n{output[-3000:]}" for mutant, _c, output in results if mutant in survivors
    )
    assert not survivors, f"variants the {check.name} does not catch:\n{report}\n\n{tails}"
