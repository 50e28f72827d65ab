"""Galleries: people and their samples in a database (SQLite in a gallery directory, or PostgreSQL),
searched through a vector index derived from it (FAISS in memory, or Milvus).

``create_index(backend="faiss"|"milvus", dim=..., metric_type="IP", index_type=...)`` makes an
empty in-memory index; ``index.save(dir_or_url)`` stores it; ``load_index(dir_or_url)`` loads a
copy (changes stored by the next ``save``); ``edit_index(dir_or_url)`` gives an attached index
whose every change is one transaction. ``load_gallery`` reads PaddleX gallery files
(``gallery.txt``: ``relative/path.jpg label``). FAISS and pymilvus are imported on first use
(backends come from ``BACKENDS``).
"""

from facefeat.index.base import (
    BACKENDS,
    AddResult,
    FaceIndex,
    Hit,
    IndexConflict,
    backend_class,
    check_model,
    create_index,
)
from facefeat.index.gallery import load_gallery, parse_gallery_file
from facefeat.index.labels import normalize_label
from facefeat.index.persist import edit_index, load_index, open_index, read_meta
from facefeat.index.resolve import resolve_index
from facefeat.index.store import SampleRecord
from facefeat.index.store_factory import open_store
from facefeat.index.types import parse_index_type

__all__ = [
    "AddResult",
    "BACKENDS",
    "FaceIndex",
    "FaissFaceIndex",
    "Hit",
    "IndexConflict",
    "MilvusFaceIndex",
    "SampleRecord",
    "backend_class",
    "check_model",
    "create_index",
    "edit_index",
    "load_gallery",
    "load_index",
    "normalize_label",
    "open_index",
    "open_store",
    "parse_gallery_file",
    "parse_index_type",
    "read_meta",
    "resolve_index",
]


_CLASSES = {"FaissFaceIndex": "faiss", "MilvusFaceIndex": "milvus"}


def __getattr__(name: str):  # lazy: keep `import facefeat.index` free of faiss/pymilvus imports
    if name in _CLASSES:
        return backend_class(_CLASSES[name])
    raise AttributeError(f"module 'facefeat.index' has no attribute {name!r}")
