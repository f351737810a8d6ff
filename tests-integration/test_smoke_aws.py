"""The AWS emulator answers real SQS, DynamoDB and S3 round trips with boto3."""

import uuid

import boto3


def test_sqs_send_receive_delete(aws_session: boto3.session.Session, aws_endpoint_url: str) -> None:
    sqs = aws_session.client("sqs", endpoint_url=aws_endpoint_url)
    url = sqs.create_queue(QueueName=f"smoke-{uuid.uuid4()}")["QueueUrl"]
    try:
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        assert [m["Body"] for m in messages] == ["hello"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_dynamodb_conditional_put(
    aws_session: boto3.session.Session, aws_endpoint_url: str
) -> None:
    ddb = aws_session.client("dynamodb", endpoint_url=aws_endpoint_url)
    table = f"smoke-{uuid.uuid4()}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        item = {"pk": {"S": "run-1"}, "status": {"S": "running"}}
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        try:
            ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            raised = False
        except ddb.exceptions.ConditionalCheckFailedException:
            raised = True
        assert raised, "a second conditional put must be refused"
        got = ddb.get_item(TableName=table, Key={"pk": {"S": "run-1"}}, ConsistentRead=True)
        assert got["Item"]["status"] == {"S": "running"}
    finally:
        ddb.delete_table(TableName=table)


def test_s3_put_get(aws_session: boto3.session.Session, aws_endpoint_url: str) -> None:
    s3 = aws_session.client("s3", endpoint_url=aws_endpoint_url)
    bucket = f"smoke-{uuid.uuid4()}"
    s3.create_bucket(Bucket=bucket)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"
        s3.delete_object(Bucket=bucket, Key="k")
    finally:
        s3.delete_bucket(Bucket=bucket)
