"""Gallery indexes: id -> (feature, label, path), searched by similarity.

``create_index(backend="faiss"|"milvus", dim=..., metric_type="IP", index_type=...)`` makes an
empty index, ``load_index(dir)`` opens a saved one of either backend, and ``load_gallery`` reads
PaddleX gallery files (``gallery.txt``: ``relative/path.jpg label``). FAISS is imported when a
FAISS index is made; pymilvus only when a Milvus one is.
"""

from facefeat.index.base import FaceIndex, Hit, check_model, create_index, load_index, read_meta
from facefeat.index.gallery import load_gallery, parse_gallery_file

__all__ = [
    "FaceIndex",
    "FaissFaceIndex",
    "Hit",
    "MilvusFaceIndex",
    "check_model",
    "create_index",
    "load_gallery",
    "load_index",
    "parse_gallery_file",
    "read_meta",
]


def __getattr__(name: str):  # lazy: keep `import facefeat.index` free of faiss/pymilvus imports
    if name == "FaissFaceIndex":
        from facefeat.index.faiss_index import FaissFaceIndex

        return FaissFaceIndex
    if name == "MilvusFaceIndex":
        from facefeat.index.milvus_index import MilvusFaceIndex

        return MilvusFaceIndex
    raise AttributeError(f"module 'facefeat.index' has no attribute {name!r}")
