"""The ``flowcraft`` command: subcommands, output streams and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft.core import __version__
from flowcraft.core.cli import main

VALID = """id: demo
nodes:
  - {id: a, uses: fetch}
  - {id: b, uses: store}
edges:
  - {source: a, target: b}
"""
INVALID = """id: demo
nodes:
  - {id: a, uses: fetch}
  - {id: a, uses: fetch}
edges:
  - {source: a, target: ghost}
"""
REGISTRY = {"fetch": print, "store": print}


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    path = tmp_path / "valid.yaml"
    path.write_text(VALID)
    return path


@pytest.fixture
def invalid(tmp_path: Path) -> Path:
    path = tmp_path / "invalid.yaml"
    path.write_text(INVALID)
    return path


def test_validate_ok(valid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid)]) == 0
    assert "valid blueprint 'demo' (2 nodes, 1 edge)" in capsys.readouterr().out


def test_validate_problems_go_to_stderr_with_paths(
    invalid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(invalid)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == "$.edges[0].target: FC202 edge-unknown-target: no node 'ghost' in this graph"
    assert lines[1].startswith("$.nodes[1].id: FC102 duplicate-node-id:")
    assert lines[-1].endswith("2 problems")


def test_validate_json(invalid: Path, valid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(invalid), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)
    assert [p["code"] for p in problems] == ["FC202", "FC102"]
    assert set(problems[0]) == {"code", "name", "path", "message", "severity"}
    assert main(["validate", str(valid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_validate_with_registry(valid: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid), "--registry", f"{__name__}:REGISTRY"]) == 0
    assert main(["validate", str(valid), "--registry", "json:dumps"]) == 2
    assert "not a collection" in capsys.readouterr().err
    assert main(["validate", str(valid), "--registry", "no.such.module:X"]) == 2
    assert main(["validate", str(valid), "--registry", "nocolon"]) == 2


@pytest.mark.parametrize("content", [None, "{broken: [", "just: [1, 2"])
def test_unreadable_file_is_a_usage_error_without_traceback(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bp.yaml"
    if content is not None:
        path.write_text(content)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowcraft: error: ")
    assert "Traceback" not in err


def test_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lint.yaml"
    path.write_text(VALID + "  - {source: a, target: b, action: x, condition: 'true'}\n")
    assert main(["lint", str(path)]) == 0
    assert "FC504 constant-condition" in capsys.readouterr().err
    assert main(["lint", str(path), "--strict"]) == 1
    assert main(["lint", str(path), "--json"]) == 0
    assert [f["code"] for f in json.loads(capsys.readouterr().out)] == ["FC504"]


def test_lint_of_an_invalid_file_reports_problems(
    invalid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", str(invalid)]) == 1
    assert "FC102" in capsys.readouterr().err


def test_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Flowcraft blueprint"
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["required"] == ["id"]


def test_mermaid(valid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mermaid", str(valid)]) == 0
    assert capsys.readouterr().out.startswith("flowchart TD\n")
    out = tmp_path / "out.mmd"
    states = tmp_path / "states.json"
    states.write_text(json.dumps({"a": "succeeded"}))
    assert main(["mermaid", str(valid), "-o", str(out), "--states", str(states)]) == 0
    assert "class n0 succeeded" in out.read_text()
    states.write_text(json.dumps({"a": "exploded"}))
    assert main(["mermaid", str(valid), "--states", str(states)]) == 2


def test_mermaid_of_an_invalid_file(invalid: Path) -> None:
    assert main(["mermaid", str(invalid)]) == 1


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flowcraft {__version__}"
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["validate"]) == 2


def test_typescript_dialect_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ts.json"
    config = {"maxRetries": 0}
    path.write_text(json.dumps({"id": "t", "nodes": [{"id": "a", "uses": "u", "config": config}]}))
    assert main(["validate", str(path)]) == 1
    assert "$.nodes[0].config.maxRetries: FC005" in capsys.readouterr().err
    assert main(["validate", str(path), "--dialect", "python"]) == 1
    assert "$.nodes[0].config.maxRetries: FC004 unknown-field" in capsys.readouterr().err


def test_an_unknown_backend_option_lists_the_accepted_ones() -> None:
    command = Path(sys.executable).with_name("flowcraft")
    done = subprocess.run(
        [str(command), "conformance", "--backend", "memory", "--option", "visiblity=1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "backend 'memory' has no option 'visiblity' (did you mean 'visibility'?)" in done.stderr
    assert "its options: sticky, visibility" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_negative_copy_after_is_a_usage_error() -> None:
    command = Path(sys.executable).with_name("flowcraft")
    done = subprocess.run(
        [str(command), "worker", "--backend", "memory", "--registry", "json:loads",
         "--copy-after", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--copy-after wants seconds >= 0, got -1" in done.stderr
    assert "Traceback" not in done.stderr
    helped = subprocess.run([str(command), "worker", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert "--copy-after SECONDS" in helped.stdout


NOISY = """
import logging

from flowcraft.core import NodeContext


async def talk(ctx: NodeContext) -> str:
    print("hello from an async node")
    ctx.logger.info("logged by %s", ctx.node_id)
    return "said"


def shout(ctx: NodeContext) -> str:
    print("hello from a thread")
    logging.getLogger("app").warning("plain logging in a thread")
    return "shouted"


registry = {"talk": talk, "shout": shout}
"""
NOISY_BLUEPRINT = """id: noisy
nodes:
  - {id: a, uses: talk}
  - {id: b, uses: shout}
edges:
  - {source: a, target: b}
"""


def test_stdout_carries_only_the_result_and_logs_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "noisy_nodes.py").write_text(NOISY)
    (tmp_path / "noisy.yaml").write_text(NOISY_BLUEPRINT)
    command = Path(sys.executable).with_name("flowcraft")
    done = subprocess.run(
        [str(command), "run", "noisy.yaml", "--registry", "noisy_nodes:registry",
         "--no-watch", "--log-level", "info"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == "shouted"  # nothing else on stdout
    assert "hello from an async node" in done.stderr
    assert "hello from a thread" in done.stderr
    assert re.search(r"WARNING app: \[run \w+ node b#1\] plain logging in a thread", done.stderr)
    assert re.search(r"INFO flowcraft\.node\.a: \[run \w+ node a#1\] logged by a", done.stderr)


def test_backends_lists_the_installed_ones_with_versions() -> None:
    command = Path(sys.executable).with_name("flowcraft")
    done = subprocess.run(
        [str(command), "backends", "--json"], capture_output=True, text=True, timeout=60, check=True
    )
    found = {b["name"]: b for b in json.loads(done.stdout)}
    assert found["memory"]["distribution"] == "flowcraft-core"
    assert found["memory"]["version"] == __version__
    assert "dead_letter" in found["memory"]["capabilities"]
    text = subprocess.run(
        [str(command), "backends"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == sorted(found)  # by name, one line each
    assert next(line for line in lines if line.startswith("memory ")).split()[2] == __version__
