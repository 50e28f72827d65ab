"""The pages (not in the OpenAPI document): ``/`` the web page (enrol, gallery, recognise; its
files under ``/static/``) and ``/docs``, Swagger UI served from local files, so that both work with
no internet access.

Swagger UI's assets come from the ``swagger-ui-bundle`` package (the ``serve`` extra), mounted
under ``/static/swagger-ui/`` (public, like the web page's files). Without it ``/docs`` is a plain
page pointing at ``/openapi.json``; it never loads anything from another site.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
ASSETS_URL = "/static/swagger-ui"

router = APIRouter(include_in_schema=False)


def swagger_ui_dir() -> Optional[Path]:
    """The folder of Swagger UI's dist files (``swagger-ui-bundle.js``, ``swagger-ui.css``), or None."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() and (path / "swagger-ui.css").is_file() else None


def mount_static(app: FastAPI) -> None:
    """Mount the pages' files: Swagger UI's assets (when installed) and the web page's ``static/``.
    Create the app with ``docs_url=None, redoc_url=None`` (FastAPI's defaults load Swagger UI and
    ReDoc from a CDN)."""
    assets = swagger_ui_dir()
    if assets is not None:  # before /static, which would otherwise take its paths
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    title = request.app.title
    if swagger_ui_dir() is None:
        return HTMLResponse(
            f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
            "<p>The interactive API page needs the package <code>swagger-ui-bundle</code> "
            "(<code>pip install 'facefeat[serve]'</code>). The API description is at "
            "<a href=\"/openapi.json\">/openapi.json</a>.</p>")
    return get_swagger_ui_html(openapi_url=request.app.openapi_url or "/openapi.json", title=f"{title} - API",
                               swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
                               oauth2_redirect_url="/docs/oauth2-redirect")


@router.get("/docs/oauth2-redirect")
def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/")
def index_page():
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
