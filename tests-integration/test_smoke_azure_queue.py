"""Azurite answers a real Azure Queue Storage round trip with azure-storage-queue."""

import uuid

from azure.storage.queue import QueueClient


def test_send_receive_delete(azure_queue_connection_string: str) -> None:
    queue = QueueClient.from_connection_string(
        azure_queue_connection_string, f"smoke-{uuid.uuid4().hex[:20]}"
    )
    queue.create_queue()
    try:
        queue.send_message("hello")
        messages = list(queue.receive_messages(visibility_timeout=30))
        assert [m.content for m in messages] == ["hello"]
        assert messages[0].dequeue_count == 1
        queue.delete_message(messages[0])
        assert list(queue.receive_messages()) == []
    finally:
        queue.delete_queue()
