"""Gallery indexes: id -> (feature, label, path), searched by similarity.

``create_index(backend="faiss"|"milvus", dim=..., metric_type="IP", index_type=...)`` makes an
empty index, ``load_index(dir)`` opens a saved one of either backend, and ``load_gallery`` reads
PaddleX gallery files (``gallery.txt``: ``relative/path.jpg label``). FAISS is imported when a
FAISS index is made; pymilvus only when a Milvus one is (backends come from ``BACKENDS``, one
table of ``name -> "module:class"`` imported on first use). ``edit_index(dir)`` loads, changes and
saves under the folder's lock, so concurrent writers all land.
"""

from facefeat.index.base import (
    BACKENDS,
    FaceIndex,
    Hit,
    IndexConflict,
    backend_class,
    check_model,
    create_index,
    edit_index,
    load_index,
    read_meta,
)
from facefeat.index.gallery import load_gallery, parse_gallery_file
from facefeat.index.resolve import resolve_index

__all__ = [
    "BACKENDS",
    "FaceIndex",
    "FaissFaceIndex",
    "Hit",
    "IndexConflict",
    "MilvusFaceIndex",
    "backend_class",
    "check_model",
    "create_index",
    "edit_index",
    "load_gallery",
    "load_index",
    "parse_gallery_file",
    "read_meta",
    "resolve_index",
]


_CLASSES = {"FaissFaceIndex": "faiss", "MilvusFaceIndex": "milvus"}


def __getattr__(name: str):  # lazy: keep `import facefeat.index` free of faiss/pymilvus imports
    if name in _CLASSES:
        return backend_class(_CLASSES[name])
    raise AttributeError(f"module 'facefeat.index' has no attribute {name!r}")
