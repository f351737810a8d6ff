"""The World conformance suite on AwsWorld (DynamoDB, SQS and S3 on moto).

Every test gets its own tables, queues and bucket (named after its namespace).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.testing.world_suite import *  # noqa: F403
from flowcraft.core.world import World


class AwsWorldFactory:
    """``AwsWorld`` for the World suite: every namespace gets its own tables, queues, bucket."""

    capabilities = frozenset({"run_expiry"})

    def __init__(self, endpoint_url: str, region: str) -> None:
        self._endpoint_url = endpoint_url
        self._region = region

    def config(self, namespace: str, **overrides: object) -> AwsWorldConfig:
        """Names from ``namespace``, short polls and fast stream tailing for tests."""
        return AwsWorldConfig.for_prefix(
            f"fw-{namespace}",
            endpoint_url=self._endpoint_url,
            region=self._region,
            poll_wait_seconds=1,
            visibility_timeout=10,
            stream_poll_max=0.05,
            **overrides,
        )

    async def create(self, namespace: str, *, run_retention: timedelta | None = None) -> World:
        """A World on fresh infrastructure."""
        world = AwsWorld(self.config(namespace, run_retention=run_retention))
        await world.ensure_infrastructure()
        return world

    async def reopen(self, world: World) -> World:
        """A second World over the same tables and queues."""
        assert isinstance(world, AwsWorld)
        return AwsWorld(world.config)

    async def destroy(self, world: World) -> None:
        """Drop the namespace's tables, queues and bucket."""
        assert isinstance(world, AwsWorld)
        cleaner = AwsWorld(world.config)
        try:
            await cleaner.drop_infrastructure()
        finally:
            await cleaner.aclose()


@pytest.fixture
def flowcraft_world_factory(aws_endpoint_url: str) -> AwsWorldFactory:
    """The World suite's factory: AwsWorld on moto."""
    return AwsWorldFactory(aws_endpoint_url, "us-east-1")
