"""The one table of vector engines (name -> "module:class", imported on first use) and create_index."""

from __future__ import annotations

import importlib
from typing import Any

from facefeat.errors import InputError

#: the one table of index backends: name -> "module:class", imported only when used
BACKENDS = {
    "faiss": "facefeat.index.faiss_index:FaissFaceIndex",
    "milvus": "facefeat.index.milvus_index:MilvusFaceIndex",
}
#: the index types each backend takes when none is given
DEFAULT_INDEX_TYPES = {"faiss": "Flat", "milvus": "FLAT"}


def backend_class(backend: str) -> Any:
    """The FaceIndex subclass of a backend name (imported on first use)."""
    target = BACKENDS.get(str(backend).lower())
    if target is None:
        raise InputError(f"unknown index backend {backend!r}; use {' or '.join(repr(b) for b in BACKENDS)}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def create_index(
    backend: str = "faiss",
    dim: int | None = None,
    metric_type: str = "IP",
    index_type: str | None = None,
    model_name: str | None = None,
    **kw: Any,
) -> Any:
    """Create an empty index. ``backend``: ``"faiss"`` (embedded, default) or ``"milvus"``.

    ``index_type``: FAISS ``Flat`` | ``IVF`` | ``IVF{nlist},Flat`` | ``HNSW32``; Milvus ``FLAT`` |
    ``IVF_FLAT`` | ``HNSW`` (the other spelling is accepted by both). Other keyword arguments go
    to the backend's constructor (e.g. ``ef_search``, ``nprobe``; Milvus ``uri``, ``collection``).
    """
    if dim is None:
        raise InputError("create_index: dim is required (the model's feature dimension)")
    b = str(backend).lower()
    if b not in BACKENDS:
        raise InputError(f"create_index: unknown backend {backend!r}; use 'faiss' or 'milvus'")
    return backend_class(b)(dim, metric_type=metric_type, index_type=index_type or DEFAULT_INDEX_TYPES[b],
                            model_name=model_name, **kw)


__all__ = ["BACKENDS", "DEFAULT_INDEX_TYPES", "backend_class", "create_index"]
