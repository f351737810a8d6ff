"""A user's first steps with the built wheels, in a fresh venv, outside the repository.

Builds the flowcraft-core and flowcraft-rabbitmq wheels, installs them into a throwaway venv and
runs the ``flowcraft`` command from a temporary directory with no pytest.ini (nor any other
project file) above it, with the repository's environment variables scrubbed:

1. core alone, no extras: ``flowcraft --help``, ``--version`` and every subcommand's ``--help``
   work (the CLI imports no test code, so no pytest); ``flowcraft conformance --backend memory``
   fails cleanly, naming the ``flowcraft-core[testing]`` extra, without a traceback;
2. then ``flowcraft-core[testing]`` plus flowcraft-rabbitmq, as ``pip install`` would add them:
   ``flowcraft conformance --backend memory`` runs the whole suite green with the plugin's own
   defaults (asyncio mode, loop scope, timeouts), an unknown backend is a one-line usage error
   listing the installed ones, and the plugin also works from an adapter project's own conftest
   under ``filterwarnings = error``.

Needs ``build`` and ``uv`` (the hatch environments have both) and the package index for the
third-party dependencies (uv's cache makes repeats take seconds); no backend service. Marked
``network``: deselect with ``-m "not network"`` when offline. Nothing is written to the repo.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ("flowcraft-core", "flowcraft-rabbitmq")

#: The subcommands flowcraft-core ships (flowcraft/core/cli); ``--help`` may list more.
KNOWN_SUBCOMMANDS = {
    "run", "validate", "lint", "mermaid", "schema", "worker", "reconcile", "conformance",
}  # fmt: skip

#: Files that would make pytest (or a tool) treat a directory as a project's root.
PROJECT_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")

pytestmark = [pytest.mark.network, pytest.mark.timeout(170)]


def _require_index() -> None:
    """Skip (fail under CI=true) when the package index, or the proxy to it, does not answer."""
    index = next(
        (os.environ[v] for v in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
         if os.environ.get(v)),
        "https://pypi.org/simple",
    )  # fmt: skip
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urllib.parse.urlsplit(proxy or index)
    host, port = url.hostname or "pypi.org", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=3.0):
            return
    except OSError:
        message = f"the package index is not reachable ({host}:{port}); the install needs it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _uv() -> str:
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to build the throwaway venv (hatch environments have it)"
    return uv


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two wheels, built from the working tree into a temporary directory."""
    _require_index()  # build's isolated environment installs hatchling from it too
    outdir = tmp_path_factory.mktemp("fresh-dist")
    for dist in DISTRIBUTIONS:
        built = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--installer", "uv", "--outdir",
             str(outdir), str(ROOT / "packages" / dist)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert built.returncode == 0, f"building {dist} failed:\n{built.stdout}\n{built.stderr}"
    found = {w.name.split("-")[0].replace("_", "-"): w for w in outdir.glob("*.whl")}
    assert set(found) == set(DISTRIBUTIONS)
    return found


def _install(venv: Path, *requirements: str) -> None:
    done = subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *requirements],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"install of {requirements} failed:\n{done.stderr}"


def _user_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with the venv activated: none of the repo's settings."""
    dropped = ("PYTEST", "PYTHON", "FLOWCRAFT_", "VIRTUAL_ENV", "HATCH", "COV_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p]
    path = [p for p in path if not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve())]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    return env


class User:
    """Runs commands in a directory of their own, with the venv's executables."""

    def __init__(self, venv: Path, workdir: Path) -> None:
        self.venv = venv
        self.workdir = workdir
        self.env = _user_env(venv)

    def run(self, program: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
        """Exit code and stdout+stderr of ``venv/bin/PROGRAM ARGS``."""
        done = subprocess.run(
            [str(self.venv / "bin" / program), *args],
            cwd=cwd or self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def ok(self, program: str, *args: str, cwd: Path | None = None) -> str:
        """Output of a command that must succeed without a traceback."""
        code, out = self.run(program, *args, cwd=cwd)
        assert code == 0, f"{program} {' '.join(args)} exited {code}:\n{out}"
        assert "Traceback" not in out, out
        return out


def _subcommands(help_text: str) -> set[str]:
    """The COMMAND entries of ``flowcraft --help`` (argparse indents them by four spaces)."""
    section = help_text.split("positional arguments:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1) for m in re.finditer(r"^ {4}([a-z][\w-]*)", section, re.MULTILINE)}


def _summary(output: str) -> dict[str, int]:
    """The counts of pytest's closing line, e.g. ``45 passed, 2 xfailed in 26.4s``."""
    last = [line for line in output.splitlines() if line.strip()][-1]
    match = re.fullmatch(r"=*\s*(?P<counts>.+?) in [\d.]+s\b.*", last.strip())
    assert match, f"no pytest summary at the end of:\n{output}"
    return {
        word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", match.group("counts"))
    }  # fmt: skip


def test_a_fresh_install_from_wheels_works_outside_the_repo(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    venv, workdir = tmp_path / "venv", tmp_path / "work"
    workdir.mkdir()
    strays = [p / f for p in workdir.parents for f in PROJECT_FILES if (p / f).exists()]
    assert strays == [], f"the work directory must be outside any project: {strays}"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    user = User(venv, workdir)

    # 1. flowcraft-core alone, no extras.
    _install(venv, str(wheels["flowcraft-core"]))
    where = user.ok("python", "-c", "import flowcraft.core as m; print(m.__file__)").strip()
    assert Path(where).is_relative_to(venv), f"flowcraft.core imported from {where}"
    code, _ = user.run("python", "-c", "import pytest")
    assert code != 0, "pytest must not come with flowcraft-core without the [testing] extra"

    help_text = user.ok("flowcraft", "--help")
    subcommands = _subcommands(help_text)
    assert subcommands >= KNOWN_SUBCOMMANDS, f"--help lists {sorted(subcommands)}"
    for name in sorted(subcommands):
        assert f"usage: flowcraft {name}" in user.ok("flowcraft", name, "--help")
    version = wheels["flowcraft-core"].name.split("-")[1]
    assert user.ok("flowcraft", "--version").strip() == f"flowcraft {version}"

    code, out = user.run("flowcraft", "conformance", "--backend", "memory")
    assert code != 0, out
    assert "flowcraft-core[testing]" in out, out
    assert "Traceback" not in out, out
    assert out.count("\n") <= 2, f"expected a short error, got:\n{out}"

    # 2. The [testing] extra and an adapter, added to the same venv.
    _install(venv, f"{wheels['flowcraft-core']}[testing]", str(wheels["flowcraft-rabbitmq"]))
    check = subprocess.run(
        [_uv(), "pip", "check", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    out = user.ok("flowcraft", "conformance", "--backend", "memory", "--", "-q", "-x")
    counts = _summary(out)
    assert counts.get("passed", 0) > 30, out
    assert not {"failed", "error", "errors"} & counts.keys(), out
    assert "asyncio_default_fixture_loop_scope" not in out, "pytest-asyncio config warning:\n" + out
    assert sorted(p.name for p in workdir.iterdir()) == [], "conformance left files behind"

    assert _subcommands(user.ok("flowcraft", "--help")) >= KNOWN_SUBCOMMANDS
    code, out = user.run("flowcraft", "conformance", "--backend", "nope")
    assert code != 0, out
    assert "no backend 'nope'" in out, out
    assert "memory, rabbitmq" in out, out
    assert "Traceback" not in out, out

    # An adapter's own test project: the plugin from its conftest, warnings as errors, no
    # asyncio settings of its own (collection runs every configure hook).
    project = tmp_path / "adapter"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    (project / "conftest.py").write_text('pytest_plugins = ["flowcraft.core.testing.plugin"]\n')
    (project / "test_conformance.py").write_text(
        "from flowcraft.core.testing.suite import *  # noqa: F403\n"
    )
    out = user.ok("python", "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider", cwd=project)
    assert re.search(r"^(\d+) tests? collected", out, re.MULTILINE), out
