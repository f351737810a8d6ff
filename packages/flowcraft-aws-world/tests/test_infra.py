"""infra/cloudformation.json defines what ensure_infrastructure() creates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowcraft.aws_world import AwsWorldConfig
from flowcraft.aws_world._schema import RETENTION, table_definitions

TEMPLATE = Path(__file__).parents[1] / "infra" / "cloudformation.json"


def _resources(kind: str) -> list[dict[str, Any]]:
    resources = json.loads(TEMPLATE.read_text())["Resources"].values()
    return [r["Properties"] for r in resources if r["Type"] == kind]


def test_the_tables_are_the_ones_the_code_creates() -> None:
    tables = {t["TableName"]: t for t in _resources("AWS::DynamoDB::Table")}
    expected = {t["TableName"]: t for t in table_definitions(AwsWorldConfig())}
    assert tables.keys() == expected.keys()
    for name, definition in expected.items():
        template = {k: v for k, v in tables[name].items() if k != "TimeToLiveSpecification"}
        assert template == definition, name
    dedup = tables[AwsWorldConfig().dedup_table]["TimeToLiveSpecification"]
    assert dedup == {"AttributeName": "expires", "Enabled": True}


def test_each_queue_has_its_dead_letter_queue() -> None:
    config = AwsWorldConfig()
    queues = {q["QueueName"]: q for q in _resources("AWS::SQS::Queue")}
    for name in (config.workflow_queue, config.step_queue):
        queue = queues[name]
        assert f"{name}-dlq" in queues
        assert queue["VisibilityTimeout"] == config.visibility_timeout
        assert queue["MessageRetentionPeriod"] == RETENTION
        assert queue["RedrivePolicy"]["maxReceiveCount"] == config.max_receive_count
