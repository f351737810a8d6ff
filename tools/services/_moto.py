"""moto in server mode: SQS, DynamoDB and S3 on one port, from a pinned PyPI release in a venv.

Started through ``moto_server_isolated.py``: moto's own server with DynamoDB requests isolated
from each other (moto's transaction rollback restores whole tables, undoing concurrent
requests' writes; see that file).
"""

from __future__ import annotations

from pathlib import Path

from _base import Service, http_status, venv_install

MOTO = "moto[server]==5.2.5"


class Moto(Service):
    name = "moto"
    start_timeout = 60.0

    def install(self) -> None:
        venv_install(self._venv, MOTO)

    @property
    def _venv(self) -> Path:
        return self.paths.cache / "venvs" / "moto-5.2.5"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        launcher = Path(__file__).with_name("moto_server_isolated.py")
        python = str(self._venv / "bin" / "python")
        return [python, str(launcher), "-H", "127.0.0.1", "-p", str(self.port)]

    def healthy(self) -> bool:
        return http_status(self.port, "/moto-api/") == 200
