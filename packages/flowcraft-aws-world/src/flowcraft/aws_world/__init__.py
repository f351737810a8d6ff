"""flowcraft-aws-world: an event-sourced World on DynamoDB, SQS and S3.

Status: layout only. The distribution is published so that its dependency set (boto3) and its
place in the ``flowcraft`` namespace are fixed; the adapter itself (the World on DynamoDB, SQS
and S3) arrives with its own issue. Until then this package exports only its version, on
purpose: no placeholder classes that pretend to work.
"""

from flowcraft.aws_world.__about__ import __version__

__all__ = ["__version__"]
