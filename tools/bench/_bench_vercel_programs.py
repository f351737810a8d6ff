"""The vercel-workflow program bench_world.py runs (a top-level module: its sandbox re-imports it).

Imports nothing but vercel-workflow. The registry serves no queue when built;
:func:`serve` registers its handler with the World vercel-workflow's selector holds.
"""

from __future__ import annotations

from vercel import workflow as vw
from vercel.workflow._internal import runtime as vercel_runtime

registry = vw.Workflows(as_vercel_job=False)

#: Steps per run.
STEPS = 20


def serve() -> vw.HTTPHandler:
    """Register the program's queue handler with the selected World."""
    return vercel_runtime.workflow_entrypoint(registry)


@registry.step
async def add(a: int, b: int) -> int:
    """``a + b``."""
    return a + b


@registry.workflow
async def twenty_steps(start: int) -> int:
    """:data:`STEPS` steps in a row."""
    value = start
    for _ in range(STEPS):
        value = await add(value, 1)
    return value
