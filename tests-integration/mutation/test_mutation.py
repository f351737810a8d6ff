"""The mutation check: the conformance suite must fail on every broken in-memory backend.

Each variant in ``flowcraft_mutants.MUTANTS`` breaks one guarantee (a no-op reconciler, lease or
delivery extensions that do nothing, a stuck delivery count, no coordination store, last-writer
-wins commits, ignored delays, dropped dead letters, leases that never expire, ...). The suite
runs on each in a child process (``-x``: the first failing test kills the variant); a variant
on which the whole suite passes survives, and this test fails naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the mutants and the check are modules beside this file

from flowcraft_mutants import MUTANT_ENV, MUTANTS  # noqa: E402
from mutation_check import ROOT, Check, assert_every_mutant_is_killed  # noqa: E402

CHECK = Check(
    name="suite",
    suite=ROOT / "tests-integration" / "memory" / "test_conformance.py",
    plugin="flowcraft_mutants",
    env=MUTANT_ENV,
    mutants=list(MUTANTS),
    options=("--flowcraft-timeout", "60"),
    parallel=4,  # each variant mostly waits on timers, not the CPU
)


def test_every_broken_backend_fails_the_suite() -> None:
    assert_every_mutant_is_killed(CHECK)
