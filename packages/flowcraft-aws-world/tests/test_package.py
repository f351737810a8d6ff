"""The distribution's public surface."""

import flowcraft.aws_world
from flowcraft.aws_world.__about__ import __version__


def test_facade_exports() -> None:
    assert sorted(flowcraft.aws_world.__all__) == [
        "AwsWorld",
        "AwsWorldConfig",
        "AwsWorldConfigError",
        "__version__",
        "create_world",
        "handle_sqs_event",
        "lambda_handler",
    ]
    assert flowcraft.aws_world.__version__ == __version__


def test_version_is_semver() -> None:
    parts = __version__.split(".")
    assert len(parts) == 3
    assert all(part.isdigit() for part in parts)
