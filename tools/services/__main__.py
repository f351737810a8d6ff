"""tools/services: install, start, stop and report every Flowcraft backend on 127.0.0.1.

Usage::

    python tools/services start  [NAME ...] [--only redis,postgres]  # installs what is missing
    python tools/services stop   [NAME ...]
    python tools/services status [NAME ...]   # one line per service; exit 1 if any is down
    python tools/services install [NAME ...]
    python tools/services restart [NAME ...]  # e.g. restart postgres (clients connected or not)
    python tools/services logs NAME           # the tail of one service's log
    python tools/services browser             # Debian's chromium for flowcraft ui's browser tests

Without a name (or ``--only``) a command applies to every service.

Ports and credentials: tools/services/services.toml (the same as docker-compose.yml).
State (data, logs, pid files): ./.services/ (git-ignored; FLOWCRAFT_SERVICES_STATE overrides).
Install cache (npm modules, Maven jars, venvs): ~/.cache/flowcraft-services
(FLOWCRAFT_SERVICES_CACHE overrides).
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import _runner
from _base import Paths, Service, ServiceError, apt_install, load_catalog
from _catalog import SERVICES


def _select(named: list[str], only: str | None = None) -> list[str]:
    names = [n.strip() for n in [*named, *(only or "").split(",")] if n.strip()]
    if not names:
        return list(SERVICES)
    for name in names:
        if name not in SERVICES:
            hint = difflib.get_close_matches(name, SERVICES, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise SystemExit(f"unknown service {name!r}{suffix}; known: {', '.join(SERVICES)}")
    return list(dict.fromkeys(names))


def _build(names: list[str]) -> list[Service]:
    catalog = load_catalog()
    paths = Paths.default()
    return [SERVICES[name](catalog[name], paths) for name in names]


def _parallel(services: list[Service], work: Callable[[Service], str]) -> int:
    """Run ``work`` for every service in parallel (slow ones first); print as they finish."""
    ordered = sorted(services, key=lambda s: not s.slow)
    failures = 0

    def guarded(service: Service) -> tuple[bool, str]:
        try:
            return True, work(service)
        except ServiceError as exc:
            return False, f"{service.name:<10} FAILED: {exc}"

    with ThreadPoolExecutor(max_workers=len(ordered) or 1) as pool:
        for ok, line in pool.map(guarded, ordered):
            print(line, flush=True)
            failures += not ok
    return 1 if failures else 0


def _start_one(service: Service) -> str:
    started = _runner.start(service)
    if started.already:
        rss = started.rss_mib
        return f"{service.name:<10} already up  port {service.port:<6} rss {rss:.0f} MiB"
    return (
        f"{service.name:<10} ready in {started.seconds:6.2f}s  port {service.port:<6} "
        f"rss {started.rss_mib:.0f} MiB"
    )


def _install_one(service: Service) -> str:
    began = time.monotonic()
    service.install()
    return f"{service.name:<10} installed ({time.monotonic() - began:.1f}s)"


def _stop_one(service: Service) -> str:
    return f"{service.name:<10} {'stopped' if _runner.stop(service) else 'was not running'}"


def _browser() -> int:
    """Install Debian's chromium (idempotent): tests-integration/rabbitmq/test_ui_browser.py."""
    try:
        apt_install("chromium")
    except ServiceError as exc:
        print(f"browser    FAILED: {exc}", flush=True)
        return 1
    print(f"{'browser':<10} chromium at {shutil.which('chromium')}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/services", description=__doc__.splitlines()[0])
    actions = ["install", "start", "stop", "restart", "status", "logs", "browser"]
    parser.add_argument("action", choices=actions)
    parser.add_argument("names", nargs="*", metavar="NAME", help="services (default: all)")
    parser.add_argument("--only", help="comma-separated services, e.g. redis,postgres")
    args = parser.parse_args(argv)
    if args.action == "browser":
        return _browser()
    if args.action == "logs":
        if len(args.names) != 1 or args.only:
            parser.error("logs needs exactly one service name")
        (service,) = _build(_select(args.names))
        print(_runner.log_tail(service, lines=200))
        return 0
    services = _build(_select(args.names, args.only))
    if args.action == "status":
        lines = [_runner.status_line(s) for s in services]
        for _up, line in lines:
            print(line)
        return 0 if all(up for up, _ in lines) else 1
    if args.action == "install":
        return _parallel(services, _install_one)
    if args.action in ("stop", "restart"):
        code = _parallel(services, _stop_one)
        if args.action == "stop":
            return code
    began = time.monotonic()
    code = _parallel(services, _start_one)
    print(f"{'all':<10} {'started' if code == 0 else 'FAILED'} in {time.monotonic() - began:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
