"""RabbitMQ from Debian, isolated from the system node by its RABBITMQ_* environment.

Debian's /usr/sbin/rabbitmq-server wrapper switches user and uses the system dirs, so we run the
real script under /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin. epmd is a separate daemon that
would outlive the node: we start our own on a private port and stop it with the node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from _base import Service, ServiceError, apt_install, tcp_exchange

#: AMQP 0-9-1 protocol header; a ready broker answers with a Connection.Start method frame.
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
EPMD_PORT_OFFSET = 10000  # epmd on port + 10000 (25673 by default); dist port on port + 20000


def _server_script() -> Path:
    found = sorted(Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"))
    if not found:
        raise ServiceError("rabbitmq-server script not found under /usr/lib/rabbitmq/lib")
    return found[-1]


class RabbitMq(Service):
    name = "rabbitmq"
    start_timeout = 90.0
    stop_timeout = 30.0

    @property
    def _epmd_port(self) -> int:
        return self.port + EPMD_PORT_OFFSET

    @property
    def _epmd_pidfile(self) -> Path:
        return self.paths.state / "run" / "rabbitmq-epmd.pid"

    def install(self) -> None:
        apt_install("rabbitmq-server")

    def prepare(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.data_dir / "rabbitmq-env.conf").write_text("")
        (self.data_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"default_user = {self.config['user']}\n"
            f"default_pass = {self.config['password']}\n"
            "loopback_users = none\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        self._start_epmd()

    def _start_epmd(self) -> None:
        if self._epmd_running():
            return
        proc = subprocess.Popen(
            ["epmd", "-port", str(self._epmd_port), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"},
            start_new_session=True,
        )
        self._epmd_pidfile.parent.mkdir(parents=True, exist_ok=True)
        self._epmd_pidfile.write_text(str(proc.pid))
        time.sleep(0.2)

    def _epmd_running(self) -> bool:
        try:
            os.kill(int(self._epmd_pidfile.read_text()), 0)
        except (OSError, ValueError):
            return False
        return True

    def env(self) -> dict[str, str]:
        d = self.data_dir
        return {
            **os.environ,
            "HOME": str(d / "home"),
            "RABBITMQ_NODENAME": f"flowcraft{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 2 * EPMD_PORT_OFFSET),
            "ERL_EPMD_PORT": str(self._epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "",
        }

    def command(self) -> list[str]:
        return [str(_server_script())]

    def healthy(self) -> bool:
        answer = tcp_exchange(self.port, AMQP_HEADER, timeout=2.0, size=16)
        # frame type 1 (method), channel 0, then class 10 (connection) method 10 (start)
        return len(answer) >= 11 and answer[0] == 1 and answer[7:11] == b"\x00\x0a\x00\x0a"

    def stop_companions(self) -> None:
        try:
            pid = int(self._epmd_pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        self._epmd_pidfile.unlink(missing_ok=True)
