"""A worker process for the fault tests: marks each delivery in a stream, then hangs.

Usage: ``python aws_world_killed_worker.py PREFIX ENDPOINT_URL``; the test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import sys

from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.world import QueueMessage, Redeliver


def config(prefix: str, endpoint_url: str) -> AwsWorldConfig:
    """The fault tests' World: 2 s visibility, 1 s polls."""
    return AwsWorldConfig.for_prefix(
        prefix, endpoint_url=endpoint_url, poll_wait_seconds=1, visibility_timeout=2
    )


async def main(prefix: str, endpoint_url: str) -> None:
    """Take deliveries of ``fault_`` queues, mark them, never finish them."""
    world = AwsWorld(config(prefix, endpoint_url))

    async def hang(
        message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        await world.streams_write("fault", "marks", f"{message_id}:{attempt}".encode())
        await asyncio.sleep(3600)
        return None

    world.register_handler("fault_", hang)
    async with world:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
