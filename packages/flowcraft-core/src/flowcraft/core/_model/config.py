"""Node configuration: retry policy, timeout, fallback and join strategy."""

from __future__ import annotations

from typing import Literal

from flowcraft.core._model.base import FrozenModel
from pydantic import Field

JoinStrategy = Literal["all", "any"]
"""``all`` waits for every incoming edge to resolve; ``any`` fires on the first taken arrival."""


class RetryPolicy(FrozenModel):
    """How often and how patiently a failing node is tried again.

    Attributes:
        max_attempts: Total attempts including the first (1 means no retry).
        delay: Seconds to wait before the second attempt.
        backoff: Factor applied to the delay after every further attempt (1 = fixed delay).
        max_delay: Upper bound of the delay in seconds, if any.
        jitter: Random extra delay as a fraction of the computed delay (0 to 1).
    """

    max_attempts: int = Field(default=1, ge=1, le=10_000)
    delay: float = Field(default=0.0, ge=0)
    backoff: float = Field(default=2.0, ge=1)
    max_delay: float | None = Field(default=None, gt=0)
    jitter: float = Field(default=0.0, ge=0, le=1)

    def delay_before(self, attempt: int) -> float:
        """Return the delay in seconds before ``attempt`` (2 or more), without jitter.

        Raises:
            ValueError: ``attempt`` is below 2.
        """
        if attempt < 2:
            raise ValueError(f"attempt {attempt} has no delay before it; retries start at 2")
        delay = self.delay * self.backoff ** (attempt - 2)
        return delay if self.max_delay is None else min(delay, self.max_delay)


class NodeConfig(FrozenModel):
    """Resilience and join settings of one node.

    Attributes:
        retry: The retry policy.
        timeout: Seconds allowed per attempt, if limited.
        fallback: Id of the node that stands in after the last failed attempt.
        join: Join strategy for several incoming edges.
    """

    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = Field(default=None, gt=0)
    fallback: str | None = None
    join: JoinStrategy = "all"
