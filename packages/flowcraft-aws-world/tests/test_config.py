"""The World's configuration: environment variables, prefixes, checks."""

from __future__ import annotations

import pytest
from flowcraft.aws_world import AwsWorldConfig, AwsWorldConfigError
from flowcraft.aws_world._config import queue_name_of


def test_from_env_reads_the_seed_variables() -> None:
    env = {
        "WORKFLOW_AWS_REGION": "eu-west-1",
        "WORKFLOW_AWS_RUNS_TABLE": "r",
        "WORKFLOW_AWS_STEPS_TABLE": "s",
        "WORKFLOW_AWS_EVENTS_TABLE": "e",
        "WORKFLOW_AWS_HOOKS_TABLE": "h",
        "WORKFLOW_AWS_STREAMS_TABLE": "c",
        "WORKFLOW_AWS_STREAM_BUCKET": "b",
        "WORKFLOW_AWS_WORKFLOW_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/flows",
        "WORKFLOW_AWS_STEP_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/steps",
        "WORKFLOW_AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    config = AwsWorldConfig.from_env(env)
    assert (config.region, config.runs_table, config.steps_table) == ("eu-west-1", "r", "s")
    assert (config.events_table, config.hooks_table, config.streams_table) == ("e", "h", "c")
    assert (config.stream_bucket, config.endpoint_url) == ("b", "http://127.0.0.1:1")
    assert queue_name_of(config.workflow_queue) == "flows"
    assert queue_name_of(config.step_queue) == "steps"


def test_from_env_falls_back_to_aws_region_and_defaults() -> None:
    config = AwsWorldConfig.from_env({"AWS_REGION": "us-west-2"}, poll_wait_seconds=2)
    assert (config.region, config.runs_table, config.poll_wait_seconds) == (
        "us-west-2",
        "workflow_runs",
        2,
    )


def test_for_prefix_names_everything_after_it() -> None:
    config = AwsWorldConfig.for_prefix("Test_NS")
    assert config.tables == tuple(
        f"test-ns-{t}" for t in ("runs", "steps", "events", "hooks", "streams", "dedup")
    )
    assert (config.workflow_queue, config.step_queue) == ("test-ns-flows", "test-ns-steps")


def test_every_bad_setting_is_named() -> None:
    with pytest.raises(AwsWorldConfigError) as caught:
        AwsWorldConfig(poll_wait_seconds=0, visibility_timeout=0, payload_threshold=10)
    message = str(caught.value)
    for name in ("poll_wait_seconds", "visibility_timeout", "payload_threshold"):
        assert name in message
