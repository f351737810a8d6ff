"""``flowcraft ui`` in a real headless Chromium, against RabbitMQ + PostgreSQL + Redis.

As a user would: a ``flowcraft worker`` process runs the blueprints, runs are started with
``flowcraft start``, two ``flowcraft ui`` processes serve the same namespace (one read-only, one
with ``--allow-actions``), and Debian's ``chromium`` (installed by ``python3 tools/services
browser``) is driven through Playwright's client. Every page is screenshotted and must log no
JavaScript error; the diagram must be Mermaid's SVG with nodes coloured by state; the status
filter and paging must select the right runs; a cancel clicked in the page must cancel a run
whose slow node is running on the worker; the read-only view must refuse it.

``FLOWCRAFT_UI_SCREENSHOTS=DIR`` also keeps the screenshots in DIR (the README's picture,
``docs/images/flowcraft-ui-run.png``, is the run page taken here).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flowcraft.core import Blueprint, dump_blueprint
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))
#: Mermaid's fill of each state (flowcraft.core.STATE_STYLES), as the browser computes it.
FILLS = {
    "running": "rgb(219, 234, 254)",
    "succeeded": "rgb(220, 252, 231)",
    "cancelled": "rgb(237, 233, 254)",
}
#: Run input that would run script if any page failed to escape it.
HOSTILE = {"note": '<img src=x onerror="window.__xss=1"></pre><script>window.__xss=2</script>'}


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium (Debian's package) is missing: run python3 tools/services browser")
    return found


def _blueprints() -> list[Blueprint]:
    return [
        bp(
            "slow",
            [n("A", "echo"), n("S", "sleep", seconds=120), n("B", "echo")],
            [e("A", "S"), e("S", "B")],
        ),
        bp("quick", [n("A", "echo"), n("B", "echo")], [e("A", "B")]),
        bp("broken", [n("F", "fail", times=9)]),
        bp(
            "review",
            [n("W", "flowcraft.wait"), n("OK", "echo"), n("NO", "echo")],
            [e("W", "OK", action="approve"), e("W", "NO", action="reject")],
        ),
    ]


@dataclass
class World:
    """The backend arguments, the blueprint files and the processes of one test."""

    backend: list[str]
    files: dict[str, Path]
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pinned(self) -> list[str]:
        return [arg for path in self.files.values() for arg in ("--blueprint", str(path))]

    def flowcraft(self, *args: str, code: int = 0) -> str:
        done = subprocess.run(
            [FLOWCRAFT, *args], capture_output=True, text=True, cwd=ROOT, timeout=90, check=False
        )
        assert done.returncode == code, done.stderr
        return done.stdout.strip()

    def start(self, blueprint: str, value: object = None) -> str:
        return self.flowcraft(
            "start", str(self.files[blueprint]), *self.backend, "--input", json.dumps(value)
        )

    def until(self, run_id: str, status: str) -> None:
        deadline = time.monotonic() + 60
        while (now := self.flowcraft("status", run_id, *self.backend)) != status:
            assert time.monotonic() < deadline, f"run {run_id} stayed {now}, never {status}"
            time.sleep(0.2)

    def wait_over(self, run_id: str) -> None:
        """Until the run is over (``flowcraft result --wait``; a failed run exits 1)."""
        subprocess.run(
            [FLOWCRAFT, "result", run_id, *self.backend, *self.pinned, "--wait", "--timeout", "60"],
            capture_output=True, cwd=ROOT, timeout=90, check=False,
        )  # fmt: skip

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [FLOWCRAFT, *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.processes.append(process)
        return process

    def ui(self, name: str, *extra: str) -> str:
        """Start ``flowcraft ui`` (any free port); its URL once it answers."""
        process = self.spawn(name, "ui", *self.backend, *self.pinned, "--port", "0", *extra)
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + 30
        while not (found := re.search(r"on (http://127\.0\.0\.1:\d+/)", log.read_text())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"flowcraft ui never said where: {log.read_text()}"
            time.sleep(0.1)
        return found.group(1)


@pytest.fixture
def world(tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str) -> Iterator[World]:
    """A fresh namespace, the blueprints on disk and a worker process running them."""
    files = {}
    for blueprint in _blueprints():
        files[blueprint.id] = tmp_path / f"{blueprint.id}.yaml"
        files[blueprint.id].write_text(dump_blueprint(blueprint, format="yaml"))
    namespace = f"t{uuid.uuid4().hex[:10]}"
    backend = [
        "--backend", "rabbitmq", "--option", f"amqp_url={rabbitmq_url}",
        "--option", f"postgres_dsn={postgres_url}", "--option", f"redis_url={redis_url}",
        "--namespace", namespace,
    ]  # fmt: skip
    found = World(backend=backend, files=files, logs=tmp_path)
    found.spawn(
        "worker", "worker", *backend, *found.pinned,
        "--registry", "flowcraft.core.testing.nodes:REGISTRY",
    )  # fmt: skip
    try:
        yield found
    finally:
        for process in found.processes:
            process.terminate()
        for process in found.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        factory = RabbitMqBackend(
            amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url
        )
        asyncio.run(_drop(factory, namespace))


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    await factory.destroy(await factory.create(namespace))


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, through Playwright (never Playwright's own browsers)."""
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are collected."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        keep = os.environ.get("FLOWCRAFT_UI_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path


def _watch(browser: Browser) -> Watched:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watched = Watched(page)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    page.on("dialog", lambda dialog: watched.errors.append(f"dialog: {dialog.message}"))
    return watched


def _fill_of(page: Page, state: str) -> tuple[str, str]:
    """The text and computed fill of the one diagram node coloured ``state``."""
    node = page.locator(f"#diagram svg g.node.{state}")
    assert node.count() == 1, f"{node.count()} nodes are {state}"
    shape = node.locator("rect, polygon, path").first
    fill = shape.evaluate("element => getComputedStyle(element).fill")
    return str(node.text_content()).strip(), str(fill)


def _follow(page: Page, selector: str) -> None:
    """Click a link and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def _rows(page: Page) -> list[str]:
    return [str(r.get_attribute("data-run")) for r in page.locator("table.runs tr[data-run]").all()]


def test_list_filter_paging_diagram_and_read_only(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    quick = [world.start("quick", {"i": i}) for i in range(3)]
    broken = world.start("broken")
    slow = world.start("slow", HOSTILE)
    url = world.ui("ui-read-only", "--page-size", "2")
    for run_id in [*quick, broken]:
        world.wait_over(run_id)
    watched = _watch(browser)
    page = watched.page

    page.goto(url)
    assert len(_rows(page)) == 2  # five runs, two a page
    watched.shot(tmp_path, "flowcraft-ui-runs")
    _follow(page, "a.filter[data-status=failed]")
    assert _rows(page) == [broken]
    _follow(page, "a.filter[data-status=completed]")
    first = _rows(page)
    _follow(page, "a.next")
    second = _rows(page)
    assert page.locator("a.next").count() == 0
    assert sorted(first + second) == sorted(quick)
    assert len(first) == 2
    _follow(page, "a.first")
    assert _rows(page) == first

    world.until(slow, "running")
    page.goto(f"{url}runs/{slow}")
    page.wait_for_selector("#diagram svg g.node.running")
    running, fill = _fill_of(page, "running")
    assert (running, fill) == ("Ssuite.sleep", FILLS["running"])
    succeeded, fill = _fill_of(page, "succeeded")
    assert (succeeded, fill) == ("Asuite.echo", FILLS["succeeded"])
    assert json.dumps(HOSTILE["note"]) in page.locator("#summary").inner_text()  # shown, not run
    assert page.evaluate("window.__xss") is None
    assert page.locator("form.cancel").count() == 0
    assert "read-only" in page.locator("#actions").inner_text()
    watched.shot(tmp_path, "flowcraft-ui-read-only")
    refused = page.request.post(f"{url}runs/{slow}/cancel", form={"csrf": "x"})
    assert refused.status == 403
    assert "--allow-actions" in refused.text()
    assert world.flowcraft("status", slow, *world.backend) == "running"
    failed_page = browser.new_page()
    failed_page.goto(f"{url}runs/{broken}")
    failed_page.wait_for_selector("#diagram svg g.node.failed")
    assert "RuntimeError" in failed_page.locator("#nodes").inner_text()
    failed_page.close()
    assert watched.errors == []
    world.flowcraft("cancel", slow, *world.backend, *world.pinned)


def test_cancel_and_resume_from_the_page(world: World, browser: Browser, tmp_path: Path) -> None:
    slow = world.start("slow", {"doc": 1})
    review = world.start("review")
    world.until(slow, "running")
    world.until(review, "awaiting")
    url = world.ui("ui-actions", "--allow-actions")
    watched = _watch(browser)
    page = watched.page

    page.goto(f"{url}runs/{slow}")
    page.wait_for_selector("#diagram svg g.node.running")
    page.wait_for_selector("#run[data-polls]")
    watched.shot(tmp_path, "flowcraft-ui-run")
    _follow(page, "form.cancel button")
    assert "Cancel requested" in page.locator(".notice").inner_text()
    page.wait_for_selector("#run[data-live=false]", timeout=60_000)
    assert world.flowcraft("status", slow, *world.backend) == "cancelled"
    result = json.loads(world.flowcraft("result", slow, *world.backend, *world.pinned, code=1))
    assert result["status"] == "cancelled"
    assert "B" not in result["outputs"]
    page.wait_for_selector("#diagram svg g.node.cancelled")
    assert _fill_of(page, "cancelled")[1] == FILLS["cancelled"]
    assert page.locator("form.cancel").count() == 0  # over: nothing to act on
    watched.shot(tmp_path, "flowcraft-ui-cancelled")

    page.goto(f"{url}runs/{review}")
    page.wait_for_selector("#diagram svg g.node.awaiting")
    page.select_option("form.resume select[name=action]", "approve")
    page.fill("form.resume input[name=output]", '"yes"')
    _follow(page, "form.resume button")
    page.wait_for_selector("#run[data-status=completed]", timeout=60_000)
    assert world.flowcraft("status", review, *world.backend) == "completed"
    page.wait_for_selector("#diagram svg g.node.succeeded >> text=OK")
    assert watched.errors == []
