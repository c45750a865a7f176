"""The admin listener's routes: ``/metrics``, ``/healthz`` and ``/`` (the status page).

Every handler awaits the reader's thread for its blocking work (database, disk, rendering), so
the event loop it shares with the SSH front door only dispatches.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from core.config import Settings
from service.admin import metrics, page
from service.admin.access import BearerToken
from service.admin.carry import SHARED_CARRY_FILE, Carry, carry_path
from service.admin.figures import Figures, LiveFigures, gather
from service.admin.health import HealthCheck
from service.admin.hostkeys import fingerprints
from service.admin.live import Live
from service.admin.snapshot import SnapshotError, SnapshotReader

UNAVAILABLE = 503
# The page loads nothing but itself: inline CSS, and the empty icon that spares a favicon request.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
}


class AdminState:
    """What the routes read: the settings, the reader, the daemon's live figures."""

    def __init__(self, settings: Settings, reader: SnapshotReader, live: Live,
                 ssh_port: Callable[[], int | None], listeners: Callable[[], dict[str, str]]) -> None:
        self.settings = settings
        self.reader = reader
        self.live = live
        self.health = HealthCheck(settings, reader, ssh_port)
        self.listeners = listeners
        self.carry = Carry(carry_path(settings.data_dir, settings.admin.listen_port),
                           settings.data_dir / SHARED_CARRY_FILE)

    async def figures(self) -> Figures:
        snapshot = await self.reader.snapshot()
        live = LiveFigures.of(self.live)  # here, on the loop that changes them
        return await self.reader.call(lambda: gather(self.settings, snapshot, live))


def create_app(state: AdminState) -> Starlette:
    async def metrics_route(request: Request) -> Response:
        try:
            figures = await state.figures()
        except SnapshotError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=UNAVAILABLE)
        body = await state.reader.call(
            lambda: metrics.exposition(figures, state.settings.admin.per_tenant_labels, state.carry))
        return Response(body, media_type=metrics.CONTENT_TYPE)

    async def health_route(request: Request) -> Response:
        health = await state.health.check()
        return JSONResponse(health.body(), status_code=200 if health.ok else UNAVAILABLE)

    async def page_route(request: Request) -> Response:
        try:
            figures = await state.figures()
        except SnapshotError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=UNAVAILABLE)
        listeners = state.listeners()
        html = await state.reader.call(lambda: page.render(
            state.settings, figures, fingerprints(state.settings.server.keys_dir), listeners))
        return HTMLResponse(html, headers=PAGE_HEADERS)

    app = Starlette(routes=[
        Route("/metrics", metrics_route),
        Route("/healthz", health_route),
        Route("/", page_route),
    ])
    if state.settings.admin.token:
        app.add_middleware(BearerToken, token=state.settings.admin.token)
    return app
