"""PostgreSQL from Debian, as a throwaway cluster in a project-owned data dir (not the system one).

initdb refuses to run as root, so when we are root the cluster belongs to the ``postgres`` user.
The unix socket lives in the data dir; TCP listens on 127.0.0.1 only. Speed flags for tests:
fsync, synchronous_commit and full_page_writes are off (data is disposable).
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from _base import Service, ServiceError, apt_install, chown_tree


def _reachable(path: Path) -> bool:
    """Whether any user may traverse every directory down to ``path`` (for the postgres user)."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [*reversed(path.parents), path]
               if p.exists())  # fmt: skip


def _bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not candidates:
        raise ServiceError("PostgreSQL binaries not found under /usr/lib/postgresql")
    return candidates[-1].parent


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # fast shutdown: connected clients do not hold it up

    def install(self) -> None:
        apt_install("postgresql")

    @property
    def workdir(self) -> Path:
        """The cluster's home: the project state dir, or a private /tmp dir when the ``postgres``
        user cannot reach the state dir (a checkout inside a root-only directory)."""
        if os.geteuid() != 0 or _reachable(self.data_dir):
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"flowcraft-postgres-{digest}"

    @property
    def _pgdata(self) -> Path:
        return self.workdir / "data"

    def run_as(self) -> str | None:
        return "postgres"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.config["password"] + "\n")
        chown_tree(self.workdir, "postgres")
        cmd = [
            str(_bin_dir() / "initdb"),
            "-D", str(self._pgdata),
            "-U", self.config["user"],
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        ]  # fmt: skip
        user = "postgres" if os.geteuid() == 0 else None
        proc = subprocess.run(
            cmd, capture_output=True, text=True, user=user, cwd=self.workdir, check=False
        )
        pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise ServiceError(f"initdb failed: {proc.stderr.strip()[-2000:]}")

    def command(self) -> list[str]:
        return [
            str(_bin_dir() / "postgres"),
            "-D", str(self._pgdata),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self._pgdata}",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def healthy(self) -> bool:
        proc = subprocess.run(
            [str(_bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def after_ready(self) -> None:
        database = self.config["database"]
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
        if exists.strip() != "1":
            self._psql(f'CREATE DATABASE "{database}"')

    def _psql(self, sql: str) -> str:
        cmd = [
            str(_bin_dir() / "psql"),
            "-h", str(self._pgdata),
            "-p", str(self.port),
            "-U", self.config["user"],
            "-d", "postgres",
            "-tAc", sql,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ServiceError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout
