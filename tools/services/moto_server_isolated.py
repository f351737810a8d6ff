"""Start moto's server with DynamoDB requests isolated from each other, as AWS isolates them.

moto 5.2 runs requests on threads and makes ``TransactWriteItems`` atomic by deep-copying the
tables it touches and restoring that copy when the transaction fails: with concurrent requests,
a failed transaction also undoes every write other requests made meanwhile (seen here: a
refused compare-and-set wiping the winner's records). Real DynamoDB never does that. This
launcher serialises DynamoDB requests (one lock around moto's DynamoDB request handler), so a
rollback only ever restores what that transaction itself changed. SQS and S3 requests stay
concurrent (SQS long polls really wait). Run with moto's own interpreter; arguments are
``moto_server``'s.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_LOCK = threading.RLock()
_call_action = DynamoHandler.call_action


@functools.wraps(_call_action)
def _isolated(self: DynamoHandler) -> Any:  # noqa: ANN401 (moto's response tuple)
    with _LOCK:
        return _call_action(self)


DynamoHandler.call_action = _isolated  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
