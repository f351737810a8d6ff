"""Facts about the workspace's distributions, read from their pyproject.toml files (stdlib only)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"
CORE = "flowcraft-core"
_VERSION_LINE = re.compile(r'^__version__ = "(?P<v>[^"]+)"$', re.MULTILINE)
_SPEC = re.compile(r"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<v>[0-9][0-9.]*)\s*$")

Version = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Distribution:
    """One distribution of the monorepo."""

    name: str
    root: Path
    version_file: Path
    dependencies: tuple[str, ...]

    @property
    def version(self) -> str:
        match = _VERSION_LINE.search(self.version_file.read_text())
        if match is None:
            raise ValueError(f"{self.version_file}: no __version__ line")
        return match.group("v")

    @property
    def core_range(self) -> str | None:
        """The specifier this distribution declares for flowcraft-core, if it depends on it."""
        for dep in self.dependencies:
            name = re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0]
            if name == CORE:
                return dep[len(name) :].strip()
        return None


def distributions() -> dict[str, Distribution]:
    """Every distribution under packages/, by name."""
    found: dict[str, Distribution] = {}
    for pyproject in sorted(PACKAGES.glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        name = data["project"]["name"]
        version_path = data["tool"]["hatch"]["version"]["path"]
        found[name] = Distribution(
            name=name,
            root=pyproject.parent,
            version_file=pyproject.parent / version_path,
            dependencies=tuple(data["project"].get("dependencies", ())),
        )
    return found


def parse_version(text: str) -> Version:
    """'1.2.3' -> (1, 2, 3); only release versions are used in this repo."""
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        raise ValueError(f"not a release version: {text!r}")
    return tuple(int(part) for part in text.split("."))


def _cmp(a: Version, b: Version) -> int:
    width = max(len(a), len(b))
    pa, pb = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (pa > pb) - (pa < pb)


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` is inside a comma-separated specifier such as '>=0.1,<1'."""
    v = parse_version(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = _SPEC.match(clause)
        if match is None:
            raise ValueError(f"unsupported specifier clause {clause!r}")
        c = _cmp(v, parse_version(match.group("v")))
        ok = {">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0, "==": c == 0, "!=": c != 0}
        if not ok[match.group("op")]:
            return False
    return True
