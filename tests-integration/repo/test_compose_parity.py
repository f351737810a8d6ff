"""docker-compose.yml publishes exactly the ports of tools/services/services.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _catalog() -> dict[str, dict[str, Any]]:
    return tomllib.loads((ROOT / "tools" / "services" / "services.toml").read_text())


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _host_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for mapping in service.get("ports", []):
        host_ip, host_port, _container = str(mapping).split(":")
        assert host_ip == "127.0.0.1", f"{mapping} must bind loopback only"
        ports.add(int(host_port))
    return ports


def test_same_services() -> None:
    assert set(_compose()["services"]) == set(_catalog())


def test_same_host_ports() -> None:
    services = _compose()["services"]
    for name, entry in _catalog().items():
        assert _host_ports(services[name]) == {entry["port"]}, name


def test_every_service_has_a_healthcheck() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_same_credentials() -> None:
    services = _compose()["services"]
    catalog = _catalog()
    pg = services["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]) == (
        catalog["postgres"]["user"],
        catalog["postgres"]["password"],
        catalog["postgres"]["database"],
    )
    mq = services["rabbitmq"]["environment"]
    assert (mq["RABBITMQ_DEFAULT_USER"], mq["RABBITMQ_DEFAULT_PASS"]) == (
        catalog["rabbitmq"]["user"],
        catalog["rabbitmq"]["password"],
    )


def test_moto_runs_the_isolating_launcher_of_the_same_version() -> None:
    """Stock moto undoes concurrent writes when a transaction fails; both run the launcher."""
    moto = _compose()["services"]["moto"]
    assert "/flowcraft/moto_server_isolated.py" in moto["entrypoint"]
    assert any("tools/services/moto_server_isolated.py" in v for v in moto["volumes"])
    pinned = (ROOT / "tools" / "services" / "_moto.py").read_text()
    version = moto["image"].rsplit(":", 1)[1]
    assert f'MOTO = "moto[server]=={version}"' in pinned
