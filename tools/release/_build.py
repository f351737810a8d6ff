"""Build distributions, each in isolation, as a wheel and an sdist (``tools/release build``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from _workspace import Distribution


class BuildError(Exception):
    """A distribution failed to build; the message names it and carries the builder's output."""


def build(dists: Sequence[Distribution], outdir: Path) -> list[Path]:
    """Build each distribution's sdist and wheel into ``outdir``; return the artefacts written.

    ``python -m build`` makes the sdist first and the wheel from it, so a file the sdist
    forgets breaks the wheel here rather than on a user's machine.
    """
    if importlib.util.find_spec("build") is None:
        raise BuildError(
            f"{sys.executable} has no 'build' package: pip install 'build[uv]', "
            "or run it in hatch's build environment (hatch run build:all)"
        )
    outdir.mkdir(parents=True, exist_ok=True)
    before = set(outdir.iterdir())
    for dist in dists:
        done = subprocess.run(
            [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(outdir),
             str(dist.root)],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise BuildError(f"{dist.name} did not build:\n{tail}")
    return sorted(set(outdir.iterdir()) - before)
