"""The HTTP service (``facefeat serve``): FastAPI app, PaddleX-compatible schemas, index storage.

``create_app(settings)`` returns the ASGI app; ``serve(settings)``
runs it with uvicorn. FastAPI and uvicorn are imported only when an app is made
(``pip install 'facefeat[serve]'``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app", "serve"]

from facefeat.serving.options import Settings  # noqa: E402  (FastAPI-free)


def create_app(*args: Any, **kwargs: Any):
    """See :func:`facefeat.serving.app.create_app`."""
    from facefeat.serving.app import create_app as _create

    return _create(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> None:
    """See :func:`facefeat.serving.app.serve`."""
    from facefeat.serving.app import serve as _serve

    return _serve(*args, **kwargs)
