"""Packaging facts of the monorepo, checked on the artefacts ``tools/release build`` writes.

* ``flowcraft`` is a PEP 420 namespace: no distribution ships ``flowcraft/__init__.py``.
* Each wheel holds only its own subpackage.
* Installing only flowcraft-core + flowcraft-rabbitmq into a fresh venv imports both and does not
  pull in another stack's client libraries (boto3, confluent-kafka, ...).
* What PyPI shows: Project-URLs (Homepage, Documentation, Repository, Issues, Changelog) in every
  wheel and sdist, all on the one repository, the documentation and changelog the
  distribution's own; the LICENSE (the repository's text) in every wheel and sdist; no relative
  link in any long description (a link such as ``../../docs/x.md`` leads nowhere on PyPI);
  version classifiers consistent with ``Requires-Python`` (each classified version admitted,
  the lowest admitted one classified, ``3 :: Only`` admitting no Python 2) and with CI.
"""

from __future__ import annotations

import email.message
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "flowcraft-core": "core",
    "flowcraft-sqs": "sqs",
    "flowcraft-azure": "azure",
    "flowcraft-rabbitmq": "rabbitmq",
    "flowcraft-kafka": "kafka",
    "flowcraft-aws-world": "aws_world",
}
REPOSITORY = "https://github.com/flowcraft-py/flowcraft"
URL_LABELS = ("Homepage", "Documentation", "Repository", "Issues", "Changelog")


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """``python tools/release build --outdir TMP``: what it wrote (it prints exactly those)."""
    outdir = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "release"), "build", "--outdir", str(outdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = sorted(outdir.iterdir())
    assert sorted(Path(line) for line in done.stdout.split()) == written
    return written


def _by_distribution(paths: list[Path], suffix: str) -> dict[str, Path]:
    found = {p.name.split("-")[0].replace("_", "-"): p for p in paths if p.name.endswith(suffix)}
    assert set(found) == set(MODULES), f"{suffix} built for {sorted(found)}"
    return found


@pytest.fixture(scope="module")
def wheels(artefacts: list[Path]) -> dict[str, Path]:
    """Distribution name -> its wheel."""
    return _by_distribution(artefacts, ".whl")


@pytest.fixture(scope="module")
def sdists(artefacts: list[Path]) -> dict[str, Path]:
    """Distribution name -> its sdist."""
    return _by_distribution(artefacts, ".tar.gz")


def test_every_distribution_is_listed() -> None:
    found = {p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists()}
    assert found == set(MODULES)


def test_no_namespace_init_anywhere() -> None:
    offenders = sorted(str(p) for p in (ROOT / "packages").glob("*/src/flowcraft/__init__.py"))
    assert offenders == []


def test_each_wheel_holds_only_its_own_subpackage(wheels: dict[str, Path]) -> None:
    for dist, wheel in wheels.items():
        names = zipfile.ZipFile(wheel).namelist()
        payload = [n for n in names if ".dist-info/" not in n]
        assert payload, f"{wheel.name} is empty"
        prefix = f"flowcraft/{MODULES[dist]}/"
        strays = [n for n in payload if not n.startswith(prefix)]
        assert strays == [], f"{wheel.name} ships files outside {prefix}: {strays}"
        assert f"{prefix}py.typed" in names
        assert "flowcraft/__init__.py" not in names


def test_each_wheel_carries_the_license_and_honest_classifiers(wheels: dict[str, Path]) -> None:
    tested = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    for dist, wheel in wheels.items():
        archive = zipfile.ZipFile(wheel)
        licenses = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses, f"{wheel.name} has no LICENSE"
        assert archive.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        versions = {
            line.removeprefix("Classifier: ")
            for line in text.splitlines()
            if line.startswith("Classifier: Programming Language :: Python :: 3.")
        }
        assert versions == {tested}, f"{dist} claims {versions}; CI tests {tested}"


def test_each_package_license_is_the_repository_license() -> None:
    for dist in MODULES:
        copy = ROOT / "packages" / dist / "LICENSE"
        assert copy.read_bytes() == (ROOT / "LICENSE").read_bytes(), f"{copy} differs"


def test_core_plus_one_adapter_installs_alone(wheels: dict[str, Path], tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to build the throwaway venv"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python),
         str(wheels["flowcraft-core"]), str(wheels["flowcraft-rabbitmq"])],
        check=True,
    )  # fmt: skip
    probe = (
        "import importlib.util as u, flowcraft.core, flowcraft.rabbitmq, pika, psycopg, redis\n"
        "absent = ['boto3', 'confluent_kafka', 'cassandra', 'azure', 'flowcraft.sqs']\n"
        "print(sorted(m for m in absent if u.find_spec(m.split('.')[0]) is not None"
        " and (m != 'flowcraft.sqs' or u.find_spec(m) is not None)))\n"
    )
    out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


_FENCED = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_LINK_TARGETS = (
    re.compile(r"\]\(\s*<?([^)\s>]+)"),  # [text](target) and ![alt](target)
    re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M),  # [label]: target
    re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I),  # HTML
)
_ABSOLUTE = re.compile(r"^(https?:|mailto:|#)", re.I)


def _wheel_metadata(wheel: Path) -> email.message.Message:
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(archive.read(name).decode())


def _sdist_file(sdist: Path, name: str) -> bytes:
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        member = archive.extractfile(f"{top}/{name}")
        assert member is not None, f"{sdist.name} has no {name}"
        return member.read()


def _sdist_metadata(sdist: Path) -> email.message.Message:
    return email.parser.Parser().parsestr(_sdist_file(sdist, "PKG-INFO").decode())


def _project_urls(metadata: email.message.Message) -> dict[str, str]:
    pairs = (value.split(",", 1) for value in metadata.get_all("Project-URL") or [])
    return {label.strip(): url.strip() for label, url in pairs}


def relative_links(markdown: str) -> list[str]:
    """Link targets of ``markdown`` that are not absolute URLs or fragments (code excluded)."""
    prose = _CODE_SPAN.sub("", _FENCED.sub("", markdown))
    targets = [m.group(1) for pattern in _LINK_TARGETS for m in pattern.finditer(prose)]
    return [target for target in targets if not _ABSOLUTE.match(target)]


def _python_versions(metadata: email.message.Message) -> set[str]:
    prefix = "Programming Language :: Python :: "
    return {
        c.removeprefix(prefix)
        for c in metadata.get_all("Classifier") or []
        if re.fullmatch(r"\d+\.\d+", c.removeprefix(prefix))
    }


def test_the_link_check_finds_relative_links() -> None:
    text = (
        "See [the guide](../../docs/guide.md), ![logo](img/logo.png), [home][h] and\n"
        '<a href="CHANGELOG.md">x</a>, but not [ok](https://x.org/a) or [top](#usage).\n\n'
        "[h]: ./index.md\n\n```python\nregistry['a'](x)\n```\nand `f[0](y)` in code.\n"
    )
    assert relative_links(text) == ["../../docs/guide.md", "img/logo.png", "./index.md",
                                     "CHANGELOG.md"]  # fmt: skip


def test_every_wheel_and_sdist_carries_the_project_urls(
    wheels: dict[str, Path], sdists: dict[str, Path]
) -> None:
    for dist, wheel in wheels.items():
        urls = _project_urls(_wheel_metadata(wheel))
        assert tuple(urls) == URL_LABELS, f"{wheel.name}: {urls}"
        assert urls["Homepage"] == urls["Repository"] == REPOSITORY, wheel.name
        assert urls["Issues"] == f"{REPOSITORY}/issues", wheel.name
        assert urls["Documentation"] == f"{REPOSITORY}/tree/main/packages/{dist}#readme"
        assert urls["Changelog"] == f"{REPOSITORY}/blob/main/packages/{dist}/CHANGELOG.md"
        assert _project_urls(_sdist_metadata(sdists[dist])) == urls, sdists[dist].name


def test_the_project_urls_name_files_that_exist() -> None:
    for dist in (ROOT / "packages").iterdir():
        if (dist / "pyproject.toml").exists():
            assert (dist / "README.md").is_file(), dist
            assert (dist / "CHANGELOG.md").is_file(), dist


def test_every_sdist_carries_the_license(sdists: dict[str, Path]) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    for sdist in sdists.values():
        assert _sdist_file(sdist, "LICENSE") == license_text, sdist.name
        assert "LICENSE" in (_sdist_metadata(sdist).get_all("License-File") or []), sdist.name


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_no_long_description_has_a_relative_link(
    kind: str, wheels: dict[str, Path], sdists: dict[str, Path]
) -> None:
    for dist, wheel in wheels.items():
        metadata = _wheel_metadata(wheel) if kind == "wheel" else _sdist_metadata(sdists[dist])
        assert metadata["Description-Content-Type"] == "text/markdown", dist
        body = metadata.get_payload()
        assert isinstance(body, str), dist
        assert body.startswith("# "), f"{dist}: no README as description"
        assert relative_links(body) == [], f"{dist}'s {kind} description links relatively"


def test_version_classifiers_match_requires_python(wheels: dict[str, Path]) -> None:
    for dist, wheel in wheels.items():
        metadata = _wheel_metadata(wheel)
        admitted = SpecifierSet(metadata["Requires-Python"])
        classified = _python_versions(metadata)
        assert classified, f"{dist} classifies no Python version"
        outside = sorted(v for v in classified if v not in admitted)
        assert outside == [], f"{dist} classifies {outside}, outside {admitted}"
        lowest = next(f"3.{minor}" for minor in range(40) if f"3.{minor}" in admitted)
        assert lowest in classified, f"{dist} admits Python {lowest} ({admitted}) untested"
        classifiers = metadata.get_all("Classifier") or []
        if "Programming Language :: Python :: 3 :: Only" in classifiers:
            assert "2.7" not in admitted, dist
