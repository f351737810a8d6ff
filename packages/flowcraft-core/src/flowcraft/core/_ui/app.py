"""The web view's Starlette application: pages, the JSON the run page polls, cancel and resume.

Everything goes through one :class:`~flowcraft.core.Client` (opened with the application,
closed with it): ``list_runs`` for the list, the coordinator's record and state for a run's
page (what ``flowcraft status`` and ``result`` read), ``cancel`` and ``resume`` for actions.

Safety of the actions (``allow_actions=True``; refused with 403 and a message otherwise):

* POST only, form-encoded, each form carrying this server's random token (made at start,
  compared in constant time): another site cannot read it, so it cannot forge the form;
* a request whose ``Origin`` is not this server, or whose ``Sec-Fetch-Site`` says another
  site sent it, is refused before the token is looked at;
* only ``Host: 127.0.0.1``/``localhost`` is served (a DNS-rebinding page gets 400);
* every page has a Content-Security-Policy with ``script-src 'self'`` and
  ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from flowcraft.core._distributed.client import Client
from flowcraft.core._distributed.coordinator import VersionUnavailableError
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._ui import pages
from flowcraft.core._ui.view import RunView, run_view
from flowcraft.core.errors import ResumeError, RunNotFoundError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
MERMAID_JS = STATIC / "vendor" / "mermaid.min.js"
_MAX_LIMIT = 200
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make forms send Origin: null
    "Cache-Control": "no-store",
}

OpenClient = Callable[[], AbstractAsyncContextManager[Client]]


class _RefusedError(Exception):
    """A request this server will not serve: its status code and the reason shown to the user."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class _Ui:
    """The request handlers, over one client held for the application's life."""

    def __init__(self, open_client: OpenClient, *, allow_actions: bool, page_size: int) -> None:
        self.open_client = open_client
        self.actions = pages.Actions(
            allowed=allow_actions, csrf=secrets.token_urlsafe(32) if allow_actions else ""
        )
        self.page_size = page_size
        self._client: Client | None = None

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with self.open_client() as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:  # pragma: no cover - Starlette runs the lifespan first
            raise RuntimeError("the web view's client is not open")
        return self._client

    async def runs(self, request: Request) -> Response:
        status = _status(request.query_params.get("status") or None)
        limit = _limit(request.query_params.get("limit"), self.page_size)
        cursor = request.query_params.get("cursor") or None
        page = await self.client.list_runs(status=status, limit=limit, cursor=cursor)
        return _html(pages.runs_page(page, status=status, cursor=cursor, limit=limit))

    async def run(self, request: Request) -> Response:
        view = await self._view(request.path_params["run_id"])
        notice = _NOTICES.get(request.query_params.get("done", ""))
        return _html(pages.run_page(view, self.actions, notice=notice))

    async def run_api(self, request: Request) -> Response:
        view = await self._view(request.path_params["run_id"])
        return JSONResponse(pages.run_json(view, self.actions), headers=_HEADERS)

    async def _view(self, run_id: str) -> RunView:
        coordinator = self.client.coordinator
        record = await coordinator.record(run_id)
        try:
            blueprint = coordinator.pinned(record).blueprint
        except VersionUnavailableError:
            return run_view(record, None, None, now=time.time())
        _stored, state = await coordinator.load(record)
        return run_view(record, state, blueprint, now=time.time())

    async def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await self._checked_form(request)
        await self.client.cancel(run_id)
        return _back(run_id, "cancel")

    async def resume(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await self._checked_form(request)
        output = _json_field(form.get("output", "null"))
        await self.client.resume(
            run_id,
            form.get("node", ""),
            output=output,
            action=form.get("action") or None,
            frame=form.get("frame", ""),
        )
        return _back(run_id, "resume")

    async def _checked_form(self, request: Request) -> dict[str, str]:
        """The form of an action request, once it passed every check (else ``_RefusedError``)."""
        if not self.actions.allowed:
            raise _RefusedError(403, "Read-only", pages.READ_ONLY)
        _same_origin(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != _FORM:
            raise _RefusedError(415, "Not a form", f"actions take {_FORM} bodies")
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        form = {name: values[-1] for name, values in fields.items()}
        if not hmac.compare_digest(form.get("csrf", ""), self.actions.csrf):
            stale = "the form's token is missing or stale: reload the page"
            raise _RefusedError(403, "Refused", stale)
        return form


_FORM = "application/x-www-form-urlencoded"
_NOTICES = {
    "cancel": "Cancel requested: the run stops as its running nodes finish.",
    "resume": "Resumed.",
}


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        raise _RefusedError(403, "Refused", f"a request from {origin} may not act on runs")
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        raise _RefusedError(403, "Refused", "a request from another site may not act on runs")


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return RunStatus(value).value
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise _RefusedError(400, "Unknown status", f"no status {value!r}; known: {known}") from None


def _limit(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= _MAX_LIMIT:
        raise _RefusedError(400, "Bad page size", f"limit wants a number from 1 to {_MAX_LIMIT}")
    return int(value)


def _json_field(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _RefusedError(400, "Not JSON", f"output: not valid JSON ({exc.msg})") from None


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _back(run_id: str, done: str) -> Response:
    return RedirectResponse(f"/runs/{quote(run_id, safe='')}?done={done}", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _RefusedError)
    return _answer(request, exc.status, exc.title, exc.message)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _answer(request, 404, "No such run", str(exc))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _answer(request, 409, "Refused", str(exc))


def _answer(request: Request, status: int, title: str, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status, headers=_HEADERS)
    return _html(pages.message_page(title, message), status)


def create_app(
    open_client: OpenClient, *, allow_actions: bool = False, page_size: int = 20
) -> Starlette:
    """The web view over the client ``open_client`` opens (for the application's lifetime).

    ``allow_actions``: serve cancel and resume (POST, token-checked); refused otherwise.
    """
    ui = _Ui(open_client, allow_actions=allow_actions, page_size=page_size)
    routes: list[Any] = [
        Route("/", ui.runs),
        Route("/runs/{run_id}", ui.run),
        Route("/api/runs/{run_id}", ui.run_api),
        Route("/runs/{run_id}/cancel", ui.cancel, methods=["POST"]),
        Route("/runs/{run_id}/resume", ui.resume, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    return Starlette(
        routes=routes,
        middleware=[hosts],
        lifespan=ui.lifespan,
        exception_handlers={
            _RefusedError: _refused,
            RunNotFoundError: _not_found,
            ResumeError: _bad_request,
        },
    )
