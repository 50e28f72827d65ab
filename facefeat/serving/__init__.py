"""The HTTP service (``facefeat serve``): FastAPI app, PaddleX-compatible schemas, index storage.

``create_app(settings)`` returns the ASGI app; ``serve(settings)`` runs it with uvicorn. FastAPI
and uvicorn are imported only when one of them is first used (``pip install 'facefeat[serve]'``).
"""

from __future__ import annotations

from facefeat.serving.options import Settings  # FastAPI-free
from facefeat.utils import lazy_exports

__all__ = ["Settings", "create_app", "serve"]

#: public name -> the module that defines it (imported lazily: it needs FastAPI and uvicorn)
_LAZY = {"create_app": "facefeat.serving.app", "serve": "facefeat.serving.app"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

