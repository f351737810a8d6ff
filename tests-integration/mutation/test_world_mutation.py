"""The World suite's mutation check: the suite must fail on every broken ``InMemoryWorld``.

Each variant in ``world_mutants.MUTANTS`` breaks one guarantee (an event log with holes under
concurrent writers, a terminal run that accepts a transition, a step completed twice, a hook
token reused by a live hook, a wait completed twice, a stream that loses its EOF, a queue
without redelivery). The World suite runs on each in a child process (``-x``: the first
failing test kills the variant); a variant on which the whole suite passes survives, and
this test fails naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the mutants and the check are modules beside this file

from mutation_check import ROOT, Check, assert_every_mutant_is_killed  # noqa: E402
from world_mutants import MUTANT_ENV, MUTANTS  # noqa: E402

CHECK = Check(
    name="World suite",
    suite=ROOT / "tests-integration" / "world" / "test_world_conformance.py",
    plugin="world_mutants",
    env=MUTANT_ENV,
    mutants=list(MUTANTS),
    options=("--flowcraft-world-timeout", "20"),
    parallel=2,
)


def test_every_broken_world_fails_the_suite() -> None:
    assert_every_mutant_is_killed(CHECK)
