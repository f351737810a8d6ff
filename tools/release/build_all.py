"""Build every distribution as its own wheel and sdist into dist/ (or --outdir)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _workspace import ROOT, distributions


def build_all(outdir: Path) -> list[Path]:
    """Build each distribution in isolation; return the artefacts written."""
    outdir.mkdir(parents=True, exist_ok=True)
    before = set(outdir.iterdir())
    for dist in distributions().values():
        subprocess.run(
            [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(outdir),
             str(dist.root)],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return sorted(set(outdir.iterdir()) - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    for artefact in build_all(args.outdir):
        print(artefact.relative_to(ROOT) if artefact.is_relative_to(ROOT) else artefact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
