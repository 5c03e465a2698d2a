"""The docs pages (/docs, /redoc) served from an installed package, never from a CDN.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN: on a machine
without internet access they are blank. The assets here come from the
``fastapi-offline`` distribution (Swagger UI bundle, its CSS, ReDoc standalone)
and are mounted at ``/docs/assets``. The bearer scheme of the OpenAPI document
gives Swagger UI its "Authorize" button; the token entered there is sent with
"Try it out" and kept across reloads of the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute, Mount, Route

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
DOC_PATHS = frozenset({DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL})

SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "persistAuthorization": True,
    "displayRequestDuration": True,
    "tryItOutEnabled": False,
    # Swagger UI's default asks a public validator for a badge: nothing leaves this machine.
    "validatorUrl": None,
}


def _is_doc_route(route: BaseRoute) -> bool:
    if isinstance(route, Route) and route.path in DOC_PATHS:
        return True
    return isinstance(route, Mount) and route.path == ASSETS_URL


def install_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc with local assets (replacing FastAPI's CDN pages if present)."""
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(
            f"Swagger UI assets missing in {ASSETS_DIR} (pip install fastapi-offline)"
        )
    app.router.routes[:] = [r for r in app.router.routes if not _is_doc_route(r)]
    app.docs_url = app.redoc_url = None
    app.swagger_ui_oauth2_redirect_url = OAUTH2_REDIRECT_URL
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        OAUTH2_REDIRECT_URL, oauth2_redirect, methods=["GET"], include_in_schema=False
    )
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
