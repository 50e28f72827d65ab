"""Resolve a model's weights to a local file: package resource, local file, or URL + cache."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from facefeat.errors import MissingPackageError, WeightsError
from facefeat.io.files import file_sha256, package_resource
from facefeat.registry import ModelSpec
from facefeat.utils import atomic_path, cache_dir

DOWNLOAD_TIMEOUT_S = float(os.environ.get("FACEFEAT_DOWNLOAD_TIMEOUT", 30))


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def download(url: str, dst: Path, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dst`` atomically (temp file + rename), checking sha256 if given."""
    with atomic_path(dst) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:  # noqa: S310
            shutil.copyfileobj(resp, f, 1 << 20)
        if sha256 and file_sha256(tmp) != sha256:
            raise WeightsError(f"download of {url} has a wrong sha256 checksum; file discarded")
    return dst


def download_once(url: str, sha256: str | None = None, *, where: str = "weights",
                  filename: str | None = None) -> Path:
    """``url``'s file in the weights cache (``$FACEFEAT_HOME/weights/<filename>``), downloaded the
    first time only (atomically, checked against ``sha256`` when given). A failed download raises
    :class:`WeightsError` naming ``where``, the URL, and where to put the file by hand."""
    name = filename or url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "weights"
    cached = weights_cache_dir() / name
    if cached.is_file():
        return cached
    try:
        return download(url, cached, sha256)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"{where}: download of {url} failed ({exc}); no network? Put the file at {cached} (the cache, "
            f"set by FACEFEAT_HOME), or pass a local file (weights='path/to/{name}', CLI: --weights)."
        ) from exc


def default_weights(spec: ModelSpec) -> tuple[Path, str]:
    """``(local file, format)`` of ``spec``'s default weights (package file, local file, URL + cache)."""
    src = spec.weights
    if src.kind == "package":
        return package_resource(src.location, MissingPackageError), src.format
    if src.kind == "file":
        path = Path(src.location).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {src.location!r} of {spec.name} does not exist")
        return path, src.format
    if src.kind == "url":
        return download_once(src.location, src.sha256, where=f"the weights of {spec.name}",
                             filename=src.filename), src.format
    raise WeightsError(f"{spec.name}: unknown weight source kind {src.kind!r}")
