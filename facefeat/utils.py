"""Small shared helpers: atomic writes and cache locations."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def l2_normalize(x: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cache_dir() -> Path:
    """facefeat's cache root: ``$FACEFEAT_HOME`` or ``~/.cache/facefeat``."""
    root = os.environ.get("FACEFEAT_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "facefeat"
    )
    return Path(root)


def shared_dir() -> Path:
    """The project's shared data and peers (``data/lfw``, ``peers/paddlex``): ``$FACEFEAT_SHARED``,
    or ``shared/`` beside the checkout. The one place tests, benchmarks and tools look for it."""
    return Path(os.environ.get("FACEFEAT_SHARED") or Path(__file__).resolve().parents[2] / "shared").resolve()


@contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``dst``; on success it replaces ``dst`` atomically, else it is removed."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix + ".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dst) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(dst)


def atomic_write_text(dst: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dst, text.encode("utf-8"))


def atomic_write_json(dst: str | os.PathLike, obj: Any, indent: int = 4, ensure_ascii: bool = False) -> Path:
    return atomic_write_text(dst, json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii) + "\n")


@contextmanager
def atomic_dir(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside ``dst``; on success it replaces ``dst`` (old one kept until then)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
            os.rmdir(old)
            os.replace(dst, old)  # keep the previous copy until the new one is in place
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
