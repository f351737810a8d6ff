"""vercel-workflow programs that exercise a World through :class:`VercelBridge`.

Written with vercel-workflow's own decorators and calls (``Workflows``, ``@step`` with
``max_retries``, ``@workflow``, ``sleep``, ``BaseHook``, ``RetryableError``, ``FatalError``,
``get_step_metadata``, ``get_writable``). Its runtime re-imports the module of a workflow
by name inside its sandbox (which refuses ``os.getpid()`` and the like at import time), so
the programs live in a top-level module (this one, imported with its folder on ``sys.path``)
and import nothing but vercel-workflow. The registry does not serve a queue when it is
built (``as_vercel_job=False``): :func:`serve` registers its handler with the World that
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


#: The body runs of :func:`flaky` by run id, each with its attempt number (the steps run in
#: the test's process, so the test reads them; the sandboxed workflow bodies never do).
FLAKY_CALLS: dict[str, list[int]] = {}

#: Seconds :func:`flaky` and :func:`hopeless` ask their retries to wait.
RETRY_AFTER = 1


@registry.step(max_retries=3)
async def flaky(succeed_on: int) -> int:
    """Raise ``RetryableError`` (retry after :data:`RETRY_AFTER`) until attempt ``succeed_on``.

    The attempt is the World's (``step_started`` counts it), so it survives any process.
    Returns the attempt that succeeded.
    """
    info = vw.get_step_metadata()
    FLAKY_CALLS.setdefault(info.run_id, []).append(info.attempt)
    if info.attempt < succeed_on:
        raise vw.RetryableError(f"attempt {info.attempt} failed", retry_after=RETRY_AFTER)
    return info.attempt


@registry.workflow
async def retried(succeed_on: int) -> dict[str, int]:
    """:func:`flaky`, then a step after it (the run goes on once the retried step is done)."""
    attempt = await flaky(succeed_on)
    return {"attempt": attempt, "next": await add(attempt, 100)}


@registry.step(max_retries=1)
async def hopeless(reason: str) -> int:
    """Always raises ``RetryableError``: one retry allowed, so the second attempt fails it."""
    attempt = vw.get_step_metadata().attempt
    raise vw.RetryableError(f"{reason} (attempt {attempt})", retry_after=RETRY_AFTER)


@registry.workflow
async def retries_exhausted(reason: str) -> int:
    """:func:`hopeless`: the run fails once the step has used its retries."""
    return await hopeless(reason)


@registry.step
async def refuse(reason: str) -> int:
    """Raises ``FatalError``: no retry."""
    raise vw.FatalError(reason)


@registry.workflow
async def fatal(reason: str) -> int:
    """:func:`refuse`: the run fails at the step's first attempt."""
    return await refuse(reason)


@registry.step
async def stream_words(words: list[str], close: bool) -> int:
    """Write each of ``words`` as one chunk of the run's stream (closing it if ``close``)."""
    writer = vw.get_writable()
    for word in words:
        await writer.write(word)
    if close:
        await writer.close()
    return len(words)


@registry.workflow
async def streamed(first: list[str], second: list[str]) -> int:
    """Two steps stream to the run's default stream in turn; the second closes it."""
    written = await stream_words(first, False)
    return written + await stream_words(second, True)
