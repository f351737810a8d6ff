"""The World conformance suite on AwsWorld (DynamoDB, SQS and S3 on moto)."""

from flowcraft.core.testing.world_suite import *  # noqa: F403
