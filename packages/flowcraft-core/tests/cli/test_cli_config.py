"""``--config``, ``$FLOWCRAFT_CONFIG`` and ``./flowcraft.toml`` with the installed command (memory).

Each case is a user typing ``flowcraft runs`` / ``flowcraft start`` in a directory of their own:
which file is read, what beats what, and the one-line errors (exit 2, no traceback) of a wrong
file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))
MEMORY = '[backend]\nname = "memory"\nnamespace = "orders"\n'
BLUEPRINT = "id: hello\nnodes:\n  - {id: a, uses: flowcraft.wait}\n"
SETTINGS_ENV = ("FLOWCRAFT_CONFIG", "FLOWCRAFT_BACKEND", "FLOWCRAFT_NAMESPACE")


def _flowcraft(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    return subprocess.run(
        [FLOWCRAFT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


def _usage_error(done: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a usage error (exit 2, nothing on stdout, no traceback)."""
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    return line


def test_a_flowcraft_toml_in_the_current_directory_names_the_backend(tmp_path: Path) -> None:
    (tmp_path / "flowcraft.toml").write_text(MEMORY)
    (tmp_path / "hello.yaml").write_text(BLUEPRINT)
    assert _flowcraft(tmp_path, "runs").returncode == 0
    started = _flowcraft(tmp_path, "start", "hello.yaml", "--json")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith('{"run_id": ')


def test_config_names_the_file_and_wins_over_the_current_directory_s(tmp_path: Path) -> None:
    (tmp_path / "flowcraft.toml").write_text('[backend]\nname = "nope"\n')
    (tmp_path / "mine.toml").write_text(MEMORY)
    assert _flowcraft(tmp_path, "runs", "--config", "mine.toml").returncode == 0
    assert _flowcraft(tmp_path, "runs", env={"FLOWCRAFT_CONFIG": "mine.toml"}).returncode == 0
    line = _usage_error(_flowcraft(tmp_path, "runs"))
    assert line.startswith("flowcraft: error: no backend 'nope'; installed: ")


def test_the_command_line_beats_the_environment_beats_the_file(tmp_path: Path) -> None:
    (tmp_path / "flowcraft.toml").write_text('[backend]\nname = "from-file"\n')
    from_env = _usage_error(_flowcraft(tmp_path, "runs", env={"FLOWCRAFT_BACKEND": "from-env"}))
    assert from_env.startswith("flowcraft: error: no backend 'from-env'")
    ok = _flowcraft(tmp_path, "runs", "--backend", "memory", env={"FLOWCRAFT_BACKEND": "x"})
    assert ok.returncode == 0, ok.stderr


def test_an_option_the_backend_lacks_names_the_file_that_set_it(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text(MEMORY + "[backend.options]\nvisiblity = 1\n")
    line = _usage_error(_flowcraft(tmp_path, "runs", "--config", "f.toml"))
    assert line == (
        "flowcraft: error: backend 'memory' has no option 'visiblity' (did you mean "
        "'visibility'?); its options: sticky, visibility (set in the config file f.toml "
        "under [backend.options]: visiblity)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MEMORY + "colour = 1\n",
            "flowcraft: error: f.toml:4: backend.colour: unknown key "
            "(known: backend.name, backend.namespace, backend.options)",
        ),
        (
            '[backend]\nname = "memory"\nnamespace = 7\n',
            "flowcraft: error: f.toml:3: backend.namespace: must be a string, not an integer",
        ),
        (
            '[backend]\nname = "memory\n',
            "flowcraft: error: f.toml: not valid TOML: Illegal character '\\n' "
            "(at line 2, column 15)",
        ),
    ],
)
def test_a_wrong_file_is_one_line_naming_file_key_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "f.toml").write_text(text)
    for command in (["runs"], ["status", "r1"], ["conformance"]):
        assert _usage_error(_flowcraft(tmp_path, *command, "--config", "f.toml")) == expected


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    line = _usage_error(_flowcraft(tmp_path, "runs", env={"FLOWCRAFT_CONFIG": "gone.toml"}))
    assert line == (
        "flowcraft: error: gone.toml: cannot read the config file: No such file or directory"
    )


def test_no_backend_anywhere_says_where_to_name_one(tmp_path: Path) -> None:
    line = _usage_error(_flowcraft(tmp_path, "runs"))
    assert "give --backend NAME, set FLOWCRAFT_BACKEND, or name one in a config file" in line


@pytest.mark.parametrize(
    "command",
    ["worker", "reconcile", "start", "status", "result", "cancel", "resume", "runs"],
)
def test_every_backend_command_explains_its_settings_in_help(tmp_path: Path, command: str) -> None:
    done = _flowcraft(tmp_path, command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for needle in (
        "--config FILE",
        "Backend settings, highest first: the command line (--backend, --namespace, --option),",
        "the environment (FLOWCRAFT_BACKEND, FLOWCRAFT_NAMESPACE,",
        "else $FLOWCRAFT_CONFIG, else ./flowcraft.toml if it exists",
        '[backend] name = "rabbitmq" namespace = "orders" [backend.options]',
    ):
        assert needle in text, f"{command} --help lacks {needle!r}"
