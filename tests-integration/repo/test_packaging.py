"""Packaging facts of the monorepo, checked on real built artefacts.

* ``flowcraft`` is a PEP 420 namespace: no distribution ships ``flowcraft/__init__.py``.
* Each wheel holds only its own subpackage.
* Installing only flowcraft-core + flowcraft-rabbitmq into a fresh venv imports both and does not
  pull in another stack's client libraries (boto3, confluent-kafka, ...).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = {
    "flowcraft-core": "core",
    "flowcraft-sqs": "sqs",
    "flowcraft-azure": "azure",
    "flowcraft-rabbitmq": "rabbitmq",
    "flowcraft-kafka": "kafka",
    "flowcraft-aws-world": "aws_world",
}


def test_every_distribution_is_listed() -> None:
    found = {p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists()}
    assert found == set(MODULES)


def test_no_namespace_init_anywhere() -> None:
    offenders = sorted(str(p) for p in (ROOT / "packages").glob("*/src/flowcraft/__init__.py"))
    assert offenders == []


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outdir = tmp_path_factory.mktemp("dist")
    for dist in MODULES:
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--installer", "uv", "--outdir",
             str(outdir), str(ROOT / "packages" / dist)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    built = {}
    for wheel in outdir.glob("*.whl"):
        dist = wheel.name.split("-")[0].replace("_", "-")
        built[dist] = wheel
    assert set(built) == set(MODULES)
    return built


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
