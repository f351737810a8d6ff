"""flowcraft-sqs: Flowcraft on Amazon SQS and DynamoDB.

Status: layout only. The distribution is published so that its dependency set (boto3) and its
place in the ``flowcraft`` namespace are fixed; the adapter itself (`SqsAdapter`,
`DynamoDbContext`, `DynamoDbCoordinationStore`) arrives with its own issue. Until then this
package exports only its version, on purpose: no placeholder classes that pretend to work.
"""

from flowcraft.sqs.__about__ import __version__

__all__ = ["__version__"]
