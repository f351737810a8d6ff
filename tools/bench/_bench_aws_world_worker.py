"""A worker process of ``bench_aws_world.py``: vercel-workflow's runtime on one AwsWorld.

    python -m _bench_aws_world_worker --prefix P --endpoint-url URL --counts FILE
        # tools/bench on PYTHONPATH

It builds an :class:`~flowcraft.aws_world.AwsWorld` over the tables and queues of prefix ``P``
(created by the bench), puts it behind :class:`~flowcraft.core.world.vercel.VercelBridge` in
vercel-workflow's world selector, serves ``_bench_vercel_programs``' registry and starts the
World's queue consumers, as ``tests-integration/aws_world/test_vercel_aws_world.py`` does. Its
boto3 clients (DynamoDB, SQS, S3) are counted by ``_bench_sqs_worker.Calls``; on SIGUSR1 the
counts go to ``FILE`` (``_bench_common.dump_on_sigusr1``). It prints :data:`READY` once the
consumers run and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

import _bench_vercel_programs as programs
from _bench_common import dump_on_sigusr1
from _bench_sqs_worker import Calls
from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.world.vercel import VercelBridge
from vercel.workflow._internal import world as vercel_world

READY = "aws-world bench worker ready"
DEPLOYMENT = "dpl_bench"


def world_config(prefix: str, endpoint_url: str) -> AwsWorldConfig:
    """The configuration the bench and its workers share (short long polls: quick shutdown)."""
    return AwsWorldConfig.for_prefix(
        prefix, endpoint_url=endpoint_url, poll_wait_seconds=2, visibility_timeout=30
    )


def watch(calls: Calls, world: AwsWorld) -> None:
    """Count the calls of ``world``'s three clients."""
    for client in (world.aws.ddb, world.aws.sqs_client, world.aws.s3_client):
        calls.watch(client)


async def serve(prefix: str, endpoint_url: str, counts: Path) -> None:
    """Run the World's consumers with vercel-workflow's handler until SIGTERM."""
    world = AwsWorld(world_config(prefix, endpoint_url))
    calls = Calls()
    watch(calls, world)
    dump_on_sigusr1(counts, calls.snapshot)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    bridge = VercelBridge(world, deployment_id=DEPLOYMENT)
    vercel_world.set_world(bridge)
    programs.serve()
    async with bridge:
        print(READY, flush=True)
        await stopping.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``--prefix``, ``--endpoint-url``, ``--counts``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--counts", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.prefix, args.endpoint_url, args.counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
