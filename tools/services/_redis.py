"""Redis from Debian's redis-server, in memory only (no RDB, no AOF)."""

from __future__ import annotations

from _base import Service, apt_install, tcp_exchange


class Redis(Service):
    name = "redis"
    start_timeout = 20.0

    def install(self) -> None:
        apt_install("redis-server")

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
        ]  # fmt: skip

    def healthy(self) -> bool:
        return tcp_exchange(self.port, b"PING\r\n").startswith(b"+PONG")
