"""RabbitMQ restarted under a live adapter: durable messages survive, the adapter reconnects.

SLOW (about 10 s): it restarts the broker with ``python3 tools/services restart --only rabbitmq``,
so it also disturbs anything else using that RabbitMQ at the same moment. It is kept in the
default run on purpose (it proves durability and recovery); it is its own module so it can be
deselected with ``--deselect`` or ``-k 'not restart'`` while iterating.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.rabbitmq import RabbitMqAdapter

#: Restarts or disturbs shared servers (or kills their connections): runs alone, after the
#: parallel part of the integration run (see hatch.toml).
pytestmark = pytest.mark.exclusive

ROOT = Path(__file__).resolve().parents[2]


def restart_rabbitmq() -> None:
    subprocess.run(
        [sys.executable, "tools/services", "restart", "--only", "rabbitmq"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_messages_survive_a_restart_and_the_adapter_reconnects(
    queue: RabbitMqAdapter,
) -> None:
    for i in range(5):
        await queue.enqueue(ports.Message(id=f"now{i}", body=b"n"))
    for i in range(3):
        await queue.enqueue(ports.Message(id=f"later{i}", body=b"l"), delay=1.5)
    (held,) = await queue.receive(1, wait=2.0)  # prefetch 1: the rest stays in the queue

    await asyncio.to_thread(restart_rabbitmq)

    with pytest.raises(TransientBackendError):
        await held.ack()  # its channel died with the broker: never silently lost
    await queue.enqueue(ports.Message(id="after", body=b"a"))  # the publisher reconnects

    seen: dict[str, int] = {}
    for _ in range(40):
        for delivery in await queue.receive(1, wait=0.5):
            seen[delivery.message_id] = delivery.delivery_count
            await delivery.ack()
        if len(seen) == 9:
            break
    expected = {f"now{i}" for i in range(5)} | {f"later{i}" for i in range(3)} | {"after"}
    assert set(seen) == expected
    assert seen[held.message_id] >= 1
    assert await queue.receive(1, wait=0.5) == []
