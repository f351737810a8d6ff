"""Apache Kafka in KRaft mode: one combined broker+controller from the official Maven Central jars.

The jars (kafka_2.13 plus a log4j2 backend, which the pom leaves to the distribution) are copied
once into the machine cache with Maven; the log dir is formatted once (``kafka.tools.StorageTool``)
and reused on later starts. Tuned for tests: replication factor 1 for the internal topics, no
initial rebalance delay, topics created on first use, a small heap. SIGTERM is a controlled
shutdown.
"""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

from _base import Paths, Service, ServiceError, maven_install, tcp_exchange

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # Kafka 4 logs to log4j2; its pom names no backend
ARTIFACTS = (
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    f"org.apache.logging.log4j:log4j-core:{LOG4J_VERSION}",
    f"org.apache.logging.log4j:log4j-slf4j-impl:{LOG4J_VERSION}",  # Kafka logs via slf4j 1.7
)

#: kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS, with a heap for tests.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

LOG4J2_PROPERTIES = """\
status = warn
# Kafka's own shutdown hook logs the controlled shutdown; log4j's would stop logging first.
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
"""

_METADATA_API = 3
_METADATA_VERSION = 4  # the oldest Metadata version Kafka 4 still answers
_CORRELATION_ID = 0x0F1C


class Kafka(Service):
    name = "kafka"
    start_timeout = 90.0
    stop_timeout = 30.0  # a controlled shutdown takes ~2 s
    slow = True

    def __init__(self, config: dict[str, Any], paths: Paths) -> None:
        super().__init__(config, paths)
        self.controller_port = int(config["controller_port"])

    @property
    def _home(self) -> Path:
        return self.paths.cache / "maven" / f"kafka-{KAFKA_VERSION}"

    @property
    def _log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def _properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log4j2(self) -> Path:
        return self.data_dir / "log4j2.properties"

    def install(self) -> None:
        maven_install(self._home, *ARTIFACTS)

    def prepare(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._properties.write_text(self._server_properties())
        self._log4j2.write_text(LOG4J2_PROPERTIES)
        if not (self._log_dir / "meta.properties").exists():
            self._format()

    def _server_properties(self) -> str:
        port, controller = self.port, self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._log_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _format(self) -> None:
        """Write meta.properties and the bootstrap checkpoint once (kafka-storage.sh format)."""
        cmd = [
            *self._java(),
            "kafka.tools.StorageTool", "format",
            "--cluster-id", _cluster_id(),
            "--config", str(self._properties),
            "--ignore-formatted",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise ServiceError(f"kafka storage format failed ({proc.returncode}):\n{tail}")

    def _java(self) -> list[str]:
        return [
            shutil.which("java") or "java",
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._log4j2}",
            "-cp", f"{self._home / 'lib'}/*",
        ]  # fmt: skip

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self._properties)]

    def healthy(self) -> bool:
        """A Metadata request answered with at least one broker: the broker is unfenced."""
        return _metadata_brokers(self.port) >= 1


def _cluster_id() -> str:
    """A random cluster id the way Kafka's Uuid.randomUuid() prints one (no JVM needed)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def _metadata_brokers(port: int) -> int:
    """The broker count of a Metadata v4 response for no topics, or 0 when none answers."""
    client = b"flowcraft-services"
    header = struct.pack(">hhih", _METADATA_API, _METADATA_VERSION, _CORRELATION_ID, len(client))
    body = struct.pack(">i?", 0, False)  # topics: none; allow_auto_topic_creation: no
    request = header + client + body
    answer = tcp_exchange(port, struct.pack(">i", len(request)) + request)
    if len(answer) < 16:
        return 0
    _size, correlation_id, _throttle_ms, brokers = struct.unpack_from(">iiii", answer)
    return int(brokers) if correlation_id == _CORRELATION_ID else 0
