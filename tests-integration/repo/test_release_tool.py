"""tools/release bumps one distribution alone and refuses to break adapters' core ranges."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the packages and the release tool, so the real tree is never touched."""
    shutil.copytree(
        ROOT / "packages",
        tmp_path / "packages",
        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"),
    )
    shutil.copytree(ROOT / "tools" / "release", tmp_path / "tools" / "release")
    return tmp_path


def _release(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(workspace / "tools" / "release"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _snapshot(workspace: Path) -> dict[str, str]:
    return {
        str(p.relative_to(workspace)): p.read_text()
        for p in sorted((workspace / "packages").rglob("*"))
        if p.is_file()
    }


def test_bump_touches_only_that_distribution(workspace: Path) -> None:
    before = _snapshot(workspace)
    result = _release(workspace, "bump", "flowcraft-rabbitmq", "minor")
    assert result.returncode == 0, result.stderr
    after = _snapshot(workspace)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == [
        "packages/flowcraft-rabbitmq/CHANGELOG.md",
        "packages/flowcraft-rabbitmq/src/flowcraft/rabbitmq/__about__.py",
    ]
    about = after["packages/flowcraft-rabbitmq/src/flowcraft/rabbitmq/__about__.py"]
    old = before["packages/flowcraft-rabbitmq/src/flowcraft/rabbitmq/__about__.py"]
    match = re.search(r'__version__ = "(\d+)\.(\d+)\.(\d+)"', old)
    assert match is not None
    major, minor = match.group(1), match.group(2)
    assert f'__version__ = "{major}.{int(minor) + 1}.0"' in about
    changelog = after["packages/flowcraft-rabbitmq/CHANGELOG.md"]
    assert changelog.index("## Unreleased") < changelog.index(f"## {major}.{int(minor) + 1}.0 (")


def test_core_bump_outside_adapter_ranges_is_refused(workspace: Path) -> None:
    before = _snapshot(workspace)
    result = _release(workspace, "bump", "flowcraft-core", "major")
    assert result.returncode == 1
    assert "would break" in result.stderr
    assert "flowcraft-rabbitmq" in result.stderr
    assert _snapshot(workspace) == before


def test_check_passes_on_the_real_tree() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release"), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_unknown_distribution_is_a_clear_error(workspace: Path) -> None:
    result = _release(workspace, "bump", "flowcraft-nope", "patch")
    assert result.returncode == 1
    assert "unknown distribution 'flowcraft-nope'" in result.stderr


def test_build_makes_a_wheel_and_an_sdist_of_the_named_distribution(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release"), "build", "flowcraft-sqs",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert [re.sub(r"-\d+\.\d+\.\d+", "-V", name) for name in written] == [
        "flowcraft_sqs-V-py3-none-any.whl",
        "flowcraft_sqs-V.tar.gz",
    ]
    assert sorted(Path(line).name for line in result.stdout.split()) == written


def test_build_of_an_unknown_distribution_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release"), "build", "flowcraft-nope",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "unknown distribution 'flowcraft-nope'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_build_that_fails_names_the_distribution(workspace: Path, tmp_path: Path) -> None:
    pyproject = workspace / "packages" / "flowcraft-sqs" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('readme = "README.md"', 'readme = "NO.md"'))
    result = _release(workspace, "build", "flowcraft-sqs", "--outdir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.startswith("release: flowcraft-sqs did not build:")
    assert "Traceback" not in result.stderr.splitlines()[0]


def test_build_without_the_build_package_says_what_to_install(tmp_path: Path) -> None:
    bare = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = subprocess.run(
        [str(bare / "bin" / "python"), str(ROOT / "tools" / "release"), "build", "--outdir",
         str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no 'build' package: pip install 'build[uv]'" in result.stderr
    assert "Traceback" not in result.stderr
