"""The examples under examples/ run, through the CLI and through the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowcraft.core import FlowRuntime, RunStatus, load_blueprint
from flowcraft.core.cli import main

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def _repo_root() -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(previous)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["run", *args, "--no-watch"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_etl_fan_out_fan_in_with_retries(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        "examples/etl/etl.yaml",
        "--registry",
        "examples.etl.nodes:registry",
        "--input",
        "@examples/etl/input.json",
    )
    assert code == 0
    assert result["status"] == "completed"
    assert result["output"] == {"rows": 3, "total_eur": 252.82}
    assert result["context"] == {"loaded_rows": 3}


def test_etl_progress_lines_show_the_retry(capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "run",
            "examples/etl/etl.yaml",
            "--registry",
            "examples.etl.nodes:registry",
            "--input",
            "@examples/etl/input.json",
            "--no-watch",
        ]
    )
    err = capsys.readouterr().err
    assert "fetch_rates retrying (attempt 1): ConnectionError: rates API unavailable" in err
    assert "run completed" in err


def test_approval_waits_then_resumes_with_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        "examples/approval/approval.yaml",
        "--registry",
        "examples.approval.nodes:registry",
        "--input",
        '{"title": "Q3 report"}',
        "--resume",
        'review:approve={"by": "ann"}',
    )
    assert code == 0
    assert result["output"] == {"publish": {"published": "Q3 report", "approved_by": "ann"}}


def test_approval_without_resume_is_left_awaiting(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        "examples/approval/approval.yaml",
        "--registry",
        "examples.approval.nodes:registry",
        "--input",
        '{"title": "Q3 report"}',
    )
    assert code == 1
    assert result["status"] == "awaiting"


def test_map_keeps_item_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        "examples/map_items/map.yaml",
        "--registry",
        "examples.map_items.nodes:registry",
        "--input",
        "[3, 1, 2]",
    )
    assert code == 0
    assert result["output"] == {"scores": [30, 10, 20], "best": 30}


def test_loop_runs_until_its_condition_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _run(
        capsys,
        "examples/loop/loop.yaml",
        "--registry",
        "examples.loop.nodes:registry",
        "--input",
        "3",
    )
    assert code == 0
    assert result["output"] == {"value": 192, "iterations": 6}


def test_mermaid_of_a_run_colours_states(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run.mmd"
    main(
        [
            "run",
            "examples/approval/approval.yaml",
            "--registry",
            "examples.approval.nodes:registry",
            "--input",
            '{"title": "x"}',
            "--no-watch",
            "--resume",
            "review:reject",
            "--mermaid",
            str(out),
        ]
    )
    text = out.read_text()
    assert "archive" in text
    assert "skipped" in text
    assert "succeeded" in text


async def test_examples_through_the_python_api() -> None:
    from examples.etl.nodes import registry

    blueprint = load_blueprint(ROOT / "examples/etl/etl.yaml", registry=registry)
    runtime = FlowRuntime(registry=registry)
    orders = json.loads((ROOT / "examples/etl/input.json").read_text())
    result = await runtime.run(blueprint, orders)
    assert result.status is RunStatus.COMPLETED
    assert result.outputs["fetch_rates"] == {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}


def _flowcraft(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``flowcraft`` command, run from the repository root as a user would."""
    command = Path(sys.executable).with_name("flowcraft")
    return subprocess.run(
        [str(command), *args], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


APPROVAL = (
    "run", "examples/approval/approval.yaml", "--registry", "examples.approval.nodes:registry",
    "--input", '{"title": "Q3 report"}', "--no-watch",
)  # fmt: skip


def test_a_resume_with_an_action_the_wait_does_not_declare_is_refused() -> None:
    refused = _flowcraft(*APPROVAL, "--resume", "review:maybe")
    assert refused.returncode == 2
    assert "action 'maybe'" in refused.stderr
    assert "approve, reject" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_awaiting_run_says_how_to_resume_it() -> None:
    waiting = _flowcraft(*APPROVAL)
    assert waiting.returncode == 1
    result = json.loads(waiting.stdout)
    assert result["status"] == "awaiting"
    (review,) = result["awaiting"]
    assert (review["node_id"], review["actions"]) == ("review", ["approve", "reject"])
    assert review["token"]


def test_validate_and_run_import_a_registry_the_same_way() -> None:
    registry = ("--registry", "examples.etl.nodes:registry")
    checked = _flowcraft("validate", "examples/etl/etl.yaml", *registry)
    assert checked.returncode == 0, checked.stderr
    assert "valid blueprint 'etl'" in checked.stdout + checked.stderr
    ran = _flowcraft(
        "run", "examples/etl/etl.yaml", *registry, "--input", "@examples/etl/input.json",
        "--no-watch",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "completed"
