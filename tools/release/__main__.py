"""tools/release: bump, check and build the distributions, one at a time or all together.

Usage::

    python tools/release bump flowcraft-rabbitmq patch      # or minor / major / an explicit 1.2.3
    python tools/release check                              # every adapter's core range holds core
    python tools/release versions                           # one line per distribution
    python tools/release build [DIST...] [--outdir DIR]     # wheel + sdist (default: all, dist/)

A bump rewrites only ``__about__.py`` and ``CHANGELOG.md`` of that distribution: the
"## Unreleased" section becomes "## X.Y.Z (date)" and a fresh empty "Unreleased" is opened.
A bump of flowcraft-core that would leave any adapter's declared ``flowcraft-core`` range is
refused, naming the adapters (widen their ranges, and release them, first).
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

from _build import BuildError, build
from _workspace import CORE, ROOT, Distribution, distributions, parse_version, satisfies


class ReleaseError(Exception):
    """A bump that must not happen; the message says why."""


def next_version(current: str, part: str) -> str:
    if re.fullmatch(r"\d+\.\d+\.\d+", part):
        if parse_version(part) <= parse_version(current):
            raise ReleaseError(f"{part} is not newer than {current}")
        return part
    major, minor, patch = parse_version(current)
    bumped = {
        "major": (major + 1, 0, 0),
        "minor": (major, minor + 1, 0),
        "patch": (major, minor, patch + 1),
    }
    if part not in bumped:
        raise ReleaseError(f"unknown part {part!r}: use major, minor, patch or X.Y.Z")
    return ".".join(map(str, bumped[part]))


def broken_adapters(dists: dict[str, Distribution], core_version: str) -> list[str]:
    """Adapters whose declared flowcraft-core range excludes ``core_version``."""
    return [
        f"{d.name} (declares flowcraft-core{d.core_range})"
        for d in dists.values()
        if d.core_range is not None and not satisfies(core_version, d.core_range)
    ]


def bump(name: str, part: str, today: datetime.date) -> str:
    dists = distributions()
    if name not in dists:
        raise ReleaseError(f"unknown distribution {name!r}; known: {', '.join(dists)}")
    dist = dists[name]
    new = next_version(dist.version, part)
    if name == CORE and (broken := broken_adapters(dists, new)):
        raise ReleaseError(f"flowcraft-core {new} would break: {'; '.join(broken)}")
    _write_version(dist, new)
    _roll_changelog(dist, new, today)
    return new


def _write_version(dist: Distribution, new: str) -> None:
    text = dist.version_file.read_text()
    dist.version_file.write_text(
        re.sub(r'^__version__ = "[^"]+"$', f'__version__ = "{new}"', text, flags=re.MULTILINE)
    )


def _roll_changelog(dist: Distribution, new: str, today: datetime.date) -> None:
    path = dist.root / "CHANGELOG.md"
    text = path.read_text()
    if "## Unreleased" not in text:
        raise ReleaseError(f"{path}: no '## Unreleased' section")
    path.write_text(
        text.replace("## Unreleased", f"## Unreleased\n\n## {new} ({today.isoformat()})", 1)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/release", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bump_p = sub.add_parser("bump", help="bump one distribution")
    bump_p.add_argument("distribution")
    bump_p.add_argument("part", help="major, minor, patch or an explicit X.Y.Z")
    sub.add_parser("check", help="check adapters' core ranges against core's version")
    sub.add_parser("versions", help="list versions")
    build_p = sub.add_parser("build", help="build wheels and sdists, each distribution alone")
    build_p.add_argument("names", nargs="*", metavar="DIST", help="default: every distribution")
    build_p.add_argument("--outdir", type=Path, default=ROOT / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (ReleaseError, BuildError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "bump":
        new = bump(args.distribution, args.part, datetime.date.today())
        print(f"{args.distribution} -> {new}")
        return 0
    dists = distributions()
    if args.command == "build":
        return _build(dists, args.names, args.outdir)
    if args.command == "versions":
        for dist in dists.values():
            print(f"{dist.name:<22} {dist.version}  core{dist.core_range or ' (is core)'}")
        return 0
    broken = broken_adapters(dists, dists[CORE].version)
    for line in broken:
        print(f"release: {line} excludes flowcraft-core {dists[CORE].version}", file=sys.stderr)
    return 1 if broken else 0


def _build(dists: dict[str, Distribution], names: list[str], outdir: Path) -> int:
    unknown = [name for name in names if name not in dists]
    if unknown:
        raise ReleaseError(f"unknown distribution {unknown[0]!r}; known: {', '.join(dists)}")
    chosen = [dists[name] for name in names] if names else list(dists.values())
    for artefact in build(chosen, outdir):
        print(artefact.relative_to(ROOT) if artefact.is_relative_to(ROOT) else artefact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
