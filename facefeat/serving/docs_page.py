"""``/docs``: Swagger UI served from local files, so the page works with no internet access.

The assets come from the ``swagger-ui-bundle`` package (the ``serve`` extra), mounted under
``/static/swagger-ui/`` (public, like the web page's files). Without it ``/docs`` is a plain page
pointing at ``/openapi.json``; it never loads anything from another site.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/static/swagger-ui"


def swagger_ui_dir() -> Optional[Path]:
    """The folder of Swagger UI's dist files (``swagger-ui-bundle.js``, ``swagger-ui.css``), or None."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() and (path / "swagger-ui.css").is_file() else None


def install_docs(app: FastAPI, title: str) -> None:
    """``/docs`` (and its OAuth2 redirect) from local assets; create the app with ``docs_url=None,
    redoc_url=None`` (FastAPI's defaults load Swagger UI and ReDoc from a CDN)."""
    assets = swagger_ui_dir()
    if assets is not None:
        app.mount(ASSETS_URL, StaticFiles(directory=assets), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse(
                f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
                "<p>The interactive API page needs the package <code>swagger-ui-bundle</code> "
                "(<code>pip install 'facefeat[serve]'</code>). The API description is at "
                "<a href=\"/openapi.json\">/openapi.json</a>.</p>")
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{title} - API",
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
