"""The HTTP service (``facefeat serve``): FastAPI app, PaddleX-compatible schemas, index storage.

``create_app(settings)`` returns the ASGI app; ``serve(settings)`` runs it with uvicorn. FastAPI
and uvicorn are imported only when one of them is first used (``pip install 'facefeat[serve]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

from facefeat.serving.options import Settings  # FastAPI-free

__all__ = ["Settings", "create_app", "serve"]

#: public name -> the module that defines it (imported lazily: it needs FastAPI and uvicorn)
_LAZY = {"create_app": "facefeat.serving.app", "serve": "facefeat.serving.app"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facefeat.serving' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
