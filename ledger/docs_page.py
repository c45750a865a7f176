"""The API reference (``/docs``, Swagger UI; ``/redoc``) served with its scripts from this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet they
are blank. The assets come from the ``fastapi-offline`` package (pyproject.toml), which ships
Swagger UI 5 and ReDoc 2 as files and is kept in step with FastAPI's pages; only its ``static``
folder is used, served under :data:`ASSETS_URL` (Starlette's ``StaticFiles``: ETag and
Last-Modified, no directory listing). That folder is not a declared API of the package, so it is
checked when this module is imported (``core.compat``): a release that moved or renamed a file
stops the server at start with a one-line message, never a blank page. No page references
another host: Swagger UI's online validator badge, which would call validator.swagger.io, is off.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from core.compat import IncompatibleDependency

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSETS = (SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON)
#: The package and its folder that hold :data:`ASSETS`.
PACKAGE, FOLDER = "fastapi_offline", "static"


def check_assets() -> None:
    """Raise :class:`IncompatibleDependency` unless the package holds every file the pages load."""
    try:
        folder = Path(str(files(PACKAGE) / FOLDER))
    except ModuleNotFoundError:
        raise IncompatibleDependency("fastapi-offline", ["it is not installed"]) from None
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise IncompatibleDependency("fastapi-offline", [
            f"{FOLDER}/ no longer holds {', '.join(missing)}, which the API reference at /docs loads"])


check_assets()


def add_docs(app: FastAPI) -> None:
    """Serve ``/docs``, its OAuth2 redirect, ``/redoc`` and their assets on ``app``.

    Make ``app`` with ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not served.
    Links are relative to the app's ``root_path``, so the pages work behind a path prefix.
    """
    app.mount(ASSETS_URL, StaticFiles(packages=[(PACKAGE, FOLDER)]), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - reference",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{ASSETS_URL}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS_URL}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS_URL}/{FAVICON}",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS_URL}/{FAVICON}",
            with_google_fonts=False,
        )
