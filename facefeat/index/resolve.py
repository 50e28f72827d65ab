"""``index=`` as callers name it: an index object, a gallery directory, a ``postgresql://`` URL, or None.

The one function the face-recognition pipeline's ``predict``, ``verify`` and ``predict_video``
use to open an index they are given by name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from facefeat.errors import FaceIndexError
from facefeat.index.persist import load_index
from facefeat.index.store import DB_FILE, is_store_url


def resolve_index(index: Any) -> Any:
    """``index=`` as PaddleX takes it: an index object, a saved index directory, or None/"None"; also a
    gallery in PostgreSQL (a ``postgresql://`` URL)."""
    if index is None or (isinstance(index, str) and index.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(index, (str, os.PathLike)):
        if is_store_url(index):
            return load_index(str(index))
        d = Path(index)
        if (d / "id_map.yaml").is_file() and (d / "vector.index").is_file() and not (d / "meta.json").exists() \
                and not (d / DB_FILE).exists():
            raise FaceIndexError(f"{d}: is a PaddleX index (vector.index + id_map.yaml); its features come from "
                                 "another model and alignment, so facefeat cannot search it: rebuild it with "
                                 "pipeline.build_index(...) from the same gallery")
        return load_index(d)
    return index


__all__ = ["resolve_index"]
