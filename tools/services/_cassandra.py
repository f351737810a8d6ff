"""Apache Cassandra 5.0, one node, from the official ``cassandra-all`` jars on Maven Central.

Cassandra 4.1 does not run on Java 17; 5.0 does with the module flags of its
``conf/jvm17-server.options`` (mirrored below). The jars are copied once into the machine cache
with Maven; cassandra.yaml and logback.xml are written into the state folder on every start, the
data stays there between starts. Small heap, a single token, ring delay and gossip settling cut
for a one-node test cluster, JMX on 127.0.0.1 only. SIGTERM drains and stops the node.

Lightweight transactions run on Paxos v2 (``paxos_variant: v2``, Cassandra 4.1+): two round
trips per conditional write instead of four, and a contention back-off scaled to the measured
latencies (``paxos_contention_*``: waits of about p50 to p95 of the node's reads and writes,
at most 100 ms) instead of v1's random sleep of up to 100 ms per lost round. That matters to
the run store: a fan-out's workers write conditionally into one run's partition at once.
``paxos_state_purging`` stays ``legacy`` (Paxos state expires after the table's
``gc_grace_seconds``, no repair needed): ``repaired`` is for clusters that run Paxos repairs
regularly, which a test node never does.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any

from _base import Paths, Service, ServiceError, maven_install, tcp_exchange

CASSANDRA_VERSION = "5.0.8"
ARTIFACTS = (f"org.apache.cassandra:cassandra-all:{CASSANDRA_VERSION}",)

#: The heap starts small and may grow to 768 MiB (the node is idle most of a test run).
HEAP = ("-Xms256M", "-Xmx768M")

#: conf/jvm-server.options (the flags that matter here) and conf/jvm17-server.options of 5.0.
JVM_OPTIONS = (
    "-Xss256k",
    "-ea",
    "-da:net.openhft...",
    "-XX:+UseThreadPriorities",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+PerfDisableSharedMem",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Dcassandra-foreground=yes",  # without it the daemon closes stdout and stderr
    "-Dcassandra.skip_wait_for_gossip_to_settle=0",
    "-Dcassandra.ring_delay_ms=100",
)  # fmt: skip

LOGBACK_XML = """\
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""

_CQL_VERSION = 4  # native protocol v4: plain frames before and after STARTUP
_OPCODE_STARTUP, _OPCODE_READY, _OPCODE_AUTHENTICATE = 0x01, 0x02, 0x03
_STREAM = 0x0F1C


class Cassandra(Service):
    name = "cassandra"
    start_timeout = 180.0  # a first start creates the system keyspaces: ~25 s on 2 cores
    stop_timeout = 60.0  # SIGTERM drains: flushes every memtable first (~6 s)
    slow = True

    def __init__(self, config: dict[str, Any], paths: Paths) -> None:
        super().__init__(config, paths)
        self.storage_port = int(config["storage_port"])
        self.jmx_port = int(config["jmx_port"])

    @property
    def _lib(self) -> Path:
        return self.paths.cache / "maven" / f"cassandra-{CASSANDRA_VERSION}" / "lib"

    @property
    def _conf(self) -> Path:
        return self.data_dir / "conf"

    def install(self) -> None:
        maven_install(self._lib.parent, *ARTIFACTS)

    def prepare(self) -> None:
        self._conf.mkdir(parents=True, exist_ok=True)
        (self._conf / "cassandra.yaml").write_text(self._cassandra_yaml())
        (self._conf / "logback.xml").write_text(LOGBACK_XML)

    def _cassandra_yaml(self) -> str:
        data = self.data_dir
        seeds = f"127.0.0.1:{self.storage_port}"
        return f"""\
cluster_name: flowcraft
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{seeds}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {self.storage_port}
native_transport_port: {self.port}
start_native_transport: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories:
  - {data / "data"}
commitlog_directory: {data / "commitlog"}
saved_caches_directory: {data / "saved_caches"}
hints_directory: {data / "hints"}
cdc_raw_directory: {data / "cdc_raw"}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
paxos_variant: v2
paxos_state_purging: legacy
"""

    def command(self) -> list[str]:
        jamm = sorted(self._lib.glob("jamm-*.jar"))
        if not jamm:
            raise ServiceError(f"no jamm jar in {self._lib}; run: tools/services install")
        return [
            *_without_memory_locking(),
            shutil.which("java") or "java",
            *HEAP,
            *JVM_OPTIONS,
            f"-javaagent:{jamm[-1]}",
            f"-Dcassandra.config=file://{self._conf / 'cassandra.yaml'}",
            f"-Dlogback.configurationFile={self._conf / 'logback.xml'}",
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            f"-Dcom.sun.management.jmxremote.rmi.port={self.jmx_port}",  # not a random port
            f"-Dcassandra.logdir={self.data_dir / 'logs'}",
            f"-Dcassandra.storagedir={self.data_dir}",
            "-cp", f"{self._conf}:{self._lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]  # fmt: skip

    def healthy(self) -> bool:
        """STARTUP on the native port answered by READY (or AUTHENTICATE): CQL is served."""
        return _cql_startup(self.port) in (_OPCODE_READY, _OPCODE_AUTHENTICATE)


def _without_memory_locking() -> list[str]:
    """A prefix that keeps the node from pinning its whole heap in RAM when we are root.

    Cassandra always calls mlockall(MCL_CURRENT); as root (CAP_IPC_LOCK) that succeeds and makes
    every committed page resident. Without the capability it fails with a warning, as it does for
    a normal user or in a container.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return []
    return ["setpriv", "--bounding-set=-ipc_lock", "--"]


def _cql_startup(port: int) -> int:
    """The opcode of the answer to a v4 STARTUP frame, or 0 when nothing valid answers."""
    body = _string_map({"CQL_VERSION": "3.0.0"})
    frame = struct.pack(">BBhBi", _CQL_VERSION, 0, _STREAM, _OPCODE_STARTUP, len(body)) + body
    answer = tcp_exchange(port, frame)
    if len(answer) < 9:
        return 0
    version, _flags, stream, opcode, _length = struct.unpack_from(">BBhBi", answer)
    if version != 0x80 | _CQL_VERSION or stream != _STREAM:
        return 0
    return int(opcode)


def _string_map(values: dict[str, str]) -> bytes:
    out = struct.pack(">H", len(values))
    for key, value in values.items():
        for text in (key.encode(), value.encode()):
            out += struct.pack(">H", len(text)) + text
    return out
