"""The README's CloudFormation template describes exactly what ``ensure_tables`` creates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from flowcraft.sqs._schema import RETENTION, Names, table_definitions

README = Path(__file__).resolve().parents[1] / "README.md"


class _Loader(yaml.SafeLoader):
    """A safe loader that reads CloudFormation's short-form tags (``!GetAtt``) as text."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: f"{suffix} {node.value}")


def _template() -> dict[str, Any]:
    match = re.search(r"### Resources \(CloudFormation\).*?```yaml\n(.*?)```", README.read_text(),
                      flags=re.S)  # fmt: skip
    assert match is not None
    loaded: dict[str, Any] = yaml.load(match.group(1), Loader=_Loader)
    resources: dict[str, Any] = loaded["Resources"]
    return resources


def _shape(table: dict[str, Any]) -> dict[str, Any]:
    """What matters of a table definition, order-free."""

    def keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(k["AttributeName"], k["KeyType"]) for k in schema]

    def indexes(name: str) -> dict[str, Any]:
        return {
            i["IndexName"]: (keys(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in table.get(name, [])
        }

    return {
        "name": table["TableName"],
        "billing": table["BillingMode"],
        "attributes": {
            (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
        },
        "keys": keys(table["KeySchema"]),
        "lsi": indexes("LocalSecondaryIndexes"),
        "gsi": indexes("GlobalSecondaryIndexes"),
    }


def test_the_template_has_the_tables_the_code_creates() -> None:
    resources = _template()
    documented = {
        r["Properties"]["TableName"]: _shape(r["Properties"])
        for r in resources.values()
        if r["Type"] == "AWS::DynamoDB::Table"
    }
    created = {t["TableName"]: _shape(t) for t in table_definitions(Names.of("flowcraft"))}
    assert documented == created
    ttl = {
        r["Properties"]["TableName"]: r["Properties"]["TimeToLiveSpecification"]["AttributeName"]
        for r in resources.values()
        if "TimeToLiveSpecification" in r.get("Properties", {})
    }
    assert ttl == {"flowcraft-contexts": "expires_at", "flowcraft-coordination": "ttl"}


def test_the_template_has_the_queues_the_code_creates() -> None:
    queues = {
        r["Properties"]["QueueName"]: r["Properties"]
        for r in _template().values()
        if r["Type"] == "AWS::SQS::Queue"
    }
    names = Names.of("flowcraft")
    assert set(queues) == {names.jobs_queue, names.dead_queue}
    jobs = queues[names.jobs_queue]
    assert jobs["MessageRetentionPeriod"] == RETENTION
    assert jobs["RedrivePolicy"]["maxReceiveCount"] == 50
    assert jobs["RedrivePolicy"]["deadLetterTargetArn"].startswith("GetAtt DeadLetters")
