"""Backend ``aws-world``: flowcraft blueprints on an ``AwsWorld`` per namespace.

The ports come from core's ``WorldBackendFactory`` (job queue and run store over any
World); this module only opens the World. ``create(namespace)`` opens a World whose tables,
queues and bucket are named ``fc-<namespace>-...`` (created if missing when it starts);
``destroy`` (tests) deletes them. Options (strings on the command line): ``endpoint_url``
(default ``WORKFLOW_AWS_ENDPOINT_URL``, else AWS itself), ``region`` (default
``WORKFLOW_AWS_REGION``, ``AWS_REGION``, else us-east-1), ``visibility`` (seconds a taken job
may stay unsettled, 3), ``poll_wait_seconds`` (the SQS long poll, 20).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar

from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._world import AwsWorld
from flowcraft.core.backends import Backend
from flowcraft.core.world import World
from flowcraft.core.world.blueprints import WorldBackendFactory

ENDPOINT_ENV = "WORKFLOW_AWS_ENDPOINT_URL"


def recovery_prefix(namespace: str) -> str:
    """Where core's blueprint backend expects a World's recovery messages (it drops them)."""
    return f"flowcraft.{namespace}.recover."


class AwsWorldBackend(WorldBackendFactory):
    """Blueprints on an ``AwsWorld`` per namespace (see the module docstring)."""

    option_environment: ClassVar[Mapping[str, str]] = {
        "endpoint_url": ENDPOINT_ENV,
        "region": "WORKFLOW_AWS_REGION",
    }

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        visibility: float | str = 3.0,
        poll_wait_seconds: int | str = 20,
    ) -> None:
        super().__init__(self._open, visibility=float(visibility))
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        self.region = (
            region
            or os.environ.get("WORKFLOW_AWS_REGION")
            or os.environ.get("AWS_REGION", "us-east-1")
        )
        self.poll_wait_seconds = int(poll_wait_seconds)

    def config(self, namespace: str) -> AwsWorldConfig:
        """The configuration of ``namespace``'s World."""
        return AwsWorldConfig.for_prefix(
            f"fc-{namespace}",
            endpoint_url=self.endpoint_url,
            region=self.region,
            poll_wait_seconds=self.poll_wait_seconds,
        )

    def _open(self, namespace: str) -> World:
        return AwsWorld(
            self.config(namespace),
            recovery_queue_prefix=recovery_prefix(namespace),
            create_missing=True,
        )

    async def destroy(self, backend: Backend) -> None:
        """Close, then delete the namespace's tables, queues and bucket (tests only)."""
        await self.close(backend)
        cleaner = AwsWorld(self.config(str(backend.extra["namespace"])))
        try:
            await cleaner.drop_infrastructure()
        finally:
            await cleaner.aclose()
