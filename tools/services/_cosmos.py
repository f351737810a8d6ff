"""A Cosmos DB SQL-API server (@vercel/cosmosdb-server, npm) over HTTPS with a private CA.

The certificate comes from cosmos-certs.sh (shared with docker-compose.yml). Clients trust
``.services/cosmos/tls/ca.pem`` (azure-cosmos: ``connection_verify=<that path>``): no code turns
verification off.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

from _base import Service, ServiceError, http_status
from _npm import node_modules

HERE = Path(__file__).resolve().parent


class Cosmos(Service):
    name = "cosmos"
    start_timeout = 30.0

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def install(self) -> None:
        node_modules(self.paths)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["sh", str(HERE / "cosmos-certs.sh"), str(self.tls_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"certificate generation failed: {proc.stderr.strip()}")

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(node_modules(self.paths))}

    def command(self) -> list[str]:
        return [
            "node",
            str(HERE / "cosmos-server.js"),
            "127.0.0.1",
            str(self.port),
            str(self.tls_dir / "cert.pem"),
            str(self.tls_dir / "key.pem"),
        ]

    def healthy(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
        return http_status(self.port, "/", tls=context) == 200
