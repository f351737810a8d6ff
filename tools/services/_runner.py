"""Process handling shared by every service: start and wait on health, stop, status."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from _base import Service, ServiceError


@dataclass(frozen=True, slots=True)
class Started:
    """What one start did."""

    name: str
    seconds: float
    rss_mib: float
    already: bool


def read_pid(service: Service) -> int | None:
    """The pid of the running server, or None when none of ours runs."""
    pidfile = service.paths.pidfile(service.name)
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie is not alive
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_rss_mib(pid: int) -> float:
    """Resident memory of the server's whole process group, in MiB."""
    total_kib = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pid:  # field 5 of stat: process group id
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total_kib / 1024


def log_tail(service: Service, lines: int = 30) -> str:
    try:
        text = service.paths.log(service.name).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start(service: Service) -> Started:
    """Install, prepare, launch and wait until the health probe passes."""
    began = time.monotonic()
    pid = read_pid(service)
    if pid is not None and service.healthy():
        return Started(service.name, 0.0, group_rss_mib(pid), already=True)
    if pid is not None:
        stop(service)
    service.install()
    if _port_taken(service.port):
        raise ServiceError(
            f"{service.name}: port {service.port} is already in use by a process this checkout "
            f"did not start (another checkout's services, or a system {service.name}); stop it "
            "or free the port"
        )
    began = time.monotonic()
    service.prepare()
    proc = _launch(service)
    _wait_healthy(service, proc)
    service.after_ready()
    return Started(service.name, time.monotonic() - began, group_rss_mib(proc.pid), already=False)


def _port_taken(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _launch(service: Service) -> subprocess.Popen[bytes]:
    log = service.paths.log(service.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile = service.paths.pidfile(service.name)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    user = service.run_as() if os.geteuid() == 0 else None
    with log.open("ab") as out:
        out.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        out.flush()
        proc = subprocess.Popen(
            service.command(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=service.env(),
            cwd=service.workdir if service.workdir.exists() else None,
            start_new_session=True,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
        )
    pidfile.write_text(str(proc.pid))
    return proc


def _wait_healthy(service: Service, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + service.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(
                f"{service.name} exited with code {proc.returncode} before it was ready; "
                f"log {service.paths.log(service.name)}:\n{log_tail(service)}"
            )
        if service.healthy():
            return
        time.sleep(0.1)
    stop(service)
    raise ServiceError(
        f"{service.name} was not healthy after {service.start_timeout:.0f}s; "
        f"log {service.paths.log(service.name)}:\n{log_tail(service)}"
    )


def stop(service: Service) -> bool:
    """Signal the server's process group to stop, SIGKILL after the grace period.

    True if it ran. The signal is the service's ``stop_signal`` (PostgreSQL: SIGINT, its fast
    shutdown, which disconnects clients; SIGTERM would wait for every client to leave).
    """
    pid = read_pid(service)
    ran = pid is not None
    if pid is not None:
        _signal_group(pid, service.stop_signal)
        deadline = time.monotonic() + service.stop_timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
    service.stop_companions()
    service.paths.pidfile(service.name).unlink(missing_ok=True)
    return ran


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def status_line(service: Service) -> tuple[bool, str]:
    """(up, one human line) for ``status``."""
    pid = read_pid(service)
    if pid is None:
        return False, f"{service.name:<10} down      port {service.port}"
    if not service.healthy():
        return False, f"{service.name:<10} unhealthy pid {pid} port {service.port}"
    rss = group_rss_mib(pid)
    line = f"{service.name:<10} up        pid {pid:<7} port {service.port:<6} rss {rss:.0f} MiB"
    return True, line
