"""The shape of a backend service and the helpers every service uses (stdlib only).

A ``Service`` knows how to install itself (idempotently, from pinned registry packages only),
prepare its state, the command that runs it in the foreground, and one real health probe.
Process handling (pid files, logs, waiting, stopping) lives in ``_runner`` and is the same for all.
"""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Path(__file__).with_name("services.toml")


class ServiceError(Exception):
    """A service could not be installed or started; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Paths:
    """Where a service keeps things.

    ``state``: the project-owned, git-ignored folder for data, logs and pid files (wiped freely).
    ``cache``: the machine-level install cache (npm modules, Maven jars, venvs), shared between
    clones so a second run does not download again. A fresh machine fills it on first start.
    """

    state: Path
    cache: Path

    @classmethod
    def default(cls) -> Paths:
        state = Path(os.environ.get("FLOWCRAFT_SERVICES_STATE", ROOT / ".services"))
        cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        cache = Path(os.environ.get("FLOWCRAFT_SERVICES_CACHE", cache_home / "flowcraft-services"))
        return cls(state=state, cache=cache)

    def data(self, name: str) -> Path:
        return self.state / name

    def log(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"


def load_catalog() -> dict[str, dict[str, Any]]:
    """The ports and credentials of every service (services.toml)."""
    with CATALOG.open("rb") as fh:
        return tomllib.load(fh)


class Service:
    """One backend server. Subclasses fill in the hooks; the runner owns the process."""

    name: ClassVar[str]
    #: Seconds the runner waits for the first healthy probe.
    start_timeout: ClassVar[float] = 60.0
    #: Seconds between the stop signal and SIGKILL on stop.
    stop_timeout: ClassVar[float] = 20.0
    #: The signal that stops the server cleanly without waiting for its clients.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    #: Slow services are started first (all starts run in parallel threads).
    slow: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], paths: Paths) -> None:
        self.config = config
        self.paths = paths
        self.port = int(config["port"])

    @property
    def data_dir(self) -> Path:
        return self.paths.data(self.name)

    @property
    def workdir(self) -> Path:
        """The server's working directory."""
        return self.data_dir

    def install(self) -> None:
        """Install what the service needs if it is missing. Idempotent."""

    def prepare(self) -> None:
        """Create config files and initialise storage before each start."""

    def command(self) -> list[str]:
        """The foreground command that runs the server."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The environment of the server process."""
        return dict(os.environ)

    def run_as(self) -> str | None:
        """A user to run the server as (when we are root), or None."""
        return None

    def healthy(self) -> bool:
        """One real probe: True only when the server answers its own protocol."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Work that needs the running server (create a database, ...)."""

    def stop_companions(self) -> None:
        """Stop helper daemons the service started itself (e.g. epmd)."""


# ---------------------------------------------------------------- installers


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ServiceError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


_apt_updated = False
#: dpkg takes one install at a time; parallel starts queue here.
_apt_lock = threading.Lock()


def apt_install(*packages: str) -> None:
    """Install Debian packages that are not installed yet (apt-get update once per process)."""
    global _apt_updated
    with _apt_lock:
        missing = [p for p in packages if not _dpkg_installed(p)]
        if not missing:
            return
        if os.geteuid() != 0:
            raise ServiceError(f"Debian packages missing and not root: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            _run(["apt-get", "update", "-qq"], env=env)
            _apt_updated = True
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def _dpkg_installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "install ok installed" in proc.stdout


_npm_lock = threading.Lock()


def npm_install(prefix: Path, *specs: str) -> Path:
    """``npm install`` pinned specs into ``prefix`` unless already there; returns node_modules."""
    marker = prefix / ".installed"
    wanted = "\n".join(specs)
    with _npm_lock:  # azurite and cosmos share one prefix and may start together
        if marker.exists() and marker.read_text() == wanted:
            return prefix / "node_modules"
        if shutil.which("npm") is None:
            apt_install("nodejs", "npm")
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text('{"name": "flowcraft-services", "private": true}\n')
        _run(["npm", "install", "--no-audit", "--no-fund", "--silent", *specs], cwd=prefix)
        marker.write_text(wanted)
    return prefix / "node_modules"


def venv_install(venv: Path, *specs: str) -> Path:
    """Create a venv with pinned packages unless it already has them; returns its bin dir."""
    marker = venv / ".installed"
    wanted = "\n".join(specs)
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin"
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    uv = shutil.which("uv")
    if uv:
        _run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *specs])
    else:
        _run([str(venv / "bin" / "pip"), "install", "-q", *specs])
    marker.write_text(wanted)
    return venv / "bin"


#: Debian's mvn defaults to an old dependency plugin: name a recent one.
_MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
#: One Maven at a time: parallel starts share ~/.m2, whose writes are not safe across processes.
_maven_lock = threading.Lock()


def maven_install(folder: Path, *coordinates: str) -> Path:
    """Copy pinned Maven Central artifacts and their runtime dependencies into ``folder/lib``.

    ``coordinates`` are ``group:artifact:version``. Idempotent (a marker names what ``lib`` holds);
    returns the lib folder, to be put on the class path as ``lib/*``.
    """
    lib = folder / "lib"
    marker = folder / ".installed"
    wanted = "\n".join(coordinates)
    if marker.exists() and marker.read_text() == wanted:
        return lib
    pom = _throwaway_pom(coordinates)
    with _maven_lock:
        if shutil.which("java") is None:
            apt_install("openjdk-17-jre-headless")
        if shutil.which("mvn") is None:
            apt_install("maven")
        folder.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        shutil.rmtree(lib, ignore_errors=True)  # never two versions of a jar on lib/*
        (folder / "pom.xml").write_text(pom)
        goal = f"{_MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies"
        _run(
            ["mvn", "-B", "-q", goal, "-DoutputDirectory=lib", "-DincludeScope=runtime"],
            cwd=folder,
        )
        marker.write_text(wanted)
    return lib


def _throwaway_pom(coordinates: tuple[str, ...]) -> str:
    deps = []
    for coordinate in coordinates:
        parts = coordinate.split(":")
        if len(parts) != 3 or not all(parts):
            raise ServiceError(f"not a pinned group:artifact:version: {coordinate!r}")
        group, artifact, version = parts
        deps.append(
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return "\n".join(
        [
            '<project xmlns="http://maven.apache.org/POM/4.0.0">',
            "  <modelVersion>4.0.0</modelVersion>",
            "  <groupId>flowcraft.services</groupId>",
            "  <artifactId>jars</artifactId>",
            "  <version>1</version>",
            "  <packaging>pom</packaging>",
            "  <dependencies>",
            *deps,
            "  </dependencies>",
            "</project>",
            "",
        ]
    )


def chown_tree(path: Path, user: str) -> None:
    """Give ``path`` and everything under it to ``user`` (a no-op unless root)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


# ---------------------------------------------------------------- probes


def tcp_exchange(port: int, payload: bytes, *, timeout: float = 1.0, size: int = 64) -> bytes:
    """Send ``payload`` to 127.0.0.1:port; the first bytes of the answer (b'' on error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            return sock.recv(size)
    except OSError:
        return b""


def http_status(
    port: int, path: str = "/", *, tls: ssl.SSLContext | None = None, timeout: float = 2.0
) -> int:
    """The HTTP status of GET path on 127.0.0.1:port, or 0 when nothing answers."""
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()
