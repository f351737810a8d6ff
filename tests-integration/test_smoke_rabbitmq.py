"""RabbitMQ answers a real publish → consume → ack round trip with pika."""

import uuid

import pika


def test_persistent_publish_with_confirms_then_consume(rabbitmq_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = f"smoke.{uuid.uuid4()}"
        channel.queue_declare(queue=queue, durable=True)
        body = uuid.uuid4().bytes
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )
        method, _props, received = channel.basic_get(queue=queue, auto_ack=False)
        assert method is not None
        assert received == body
        channel.basic_ack(method.delivery_tag)
        assert channel.queue_declare(queue=queue, passive=True).method.message_count == 0
        channel.queue_delete(queue=queue)
    finally:
        connection.close()
