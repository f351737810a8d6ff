"""vercel-workflow programs that exercise a World through :class:`VercelBridge`.

Written with vercel-workflow's own decorators (``Workflows``, ``@step``, ``@workflow``,
``sleep``, ``BaseHook``). Its runtime re-imports the module of a workflow by name inside its
sandbox (which refuses ``os.getpid()`` and the like at import time), so the programs live in
a top-level module (this one, imported with its folder on ``sys.path``) and import nothing
but vercel-workflow. The registry does not serve a queue when it is built
(``as_vercel_job=False``): :func:`serve` registers its handler with the World that
vercel-workflow's selector holds at that moment, so each test can set a fresh World first.

Needs ``flowcraft-core[vercel]``.
"""

from __future__ import annotations

import dataclasses

from vercel import workflow as vw
from vercel.workflow._internal import runtime as vercel_runtime

registry = vw.Workflows(as_vercel_job=False)

#: How many steps :func:`twenty_steps` runs.
STEP_COUNT = 20


def serve() -> vw.HTTPHandler:
    """Register the programs' queue handler with the World the selector holds now."""
    return vercel_runtime.workflow_entrypoint(registry)


@registry.step
async def add(a: int, b: int) -> int:
    """A step: ``a + b``."""
    return a + b


@dataclasses.dataclass
class Approval(vw.BaseHook):
    """The payload a run waits for on its hook."""

    approved: bool
    note: str


@registry.workflow
async def step_sleep_hook(x: int, token: str) -> dict[str, object]:
    """A step, a one-second sleep, then the payload of the hook holding ``token``."""
    total = await add(x, 1)
    await vw.sleep(1)
    approval = await Approval.wait(token=token)
    return {"total": total, "approved": approval.approved, "note": approval.note}


@registry.workflow
async def twenty_steps(start: int) -> list[int]:
    """:data:`STEP_COUNT` steps in a row, each adding 1 to the last one's result."""
    values = []
    value = start
    for _ in range(STEP_COUNT):
        value = await add(value, 1)
        values.append(value)
    return values
