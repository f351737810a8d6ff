"""Azurite (npm) serving Azure Queue Storage, in memory."""

from __future__ import annotations

from _base import Service, http_status
from _npm import node_modules


class Azurite(Service):
    name = "azurite"
    start_timeout = 30.0

    def install(self) -> None:
        node_modules(self.paths)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(node_modules(self.paths) / ".bin" / "azurite-queue"),
            "--queueHost", "127.0.0.1",
            "--queuePort", str(self.port),
            "--inMemoryPersistence",
            "--loose",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]  # fmt: skip

    def healthy(self) -> bool:
        # An unauthenticated service-properties call: Azurite answers with its own 403 XML error.
        return http_status(self.port, "/devstoreaccount1?restype=service&comp=properties") in (
            200,
            403,
        )
