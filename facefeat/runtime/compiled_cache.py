"""Trust, but verify, the OpenVINO compiled-model cache.

OpenVINO loads a cached compiled blob without checking it: a few flipped bytes give all-zero
features (while the service says ready), a larger damage fails the load and blames the ONNX.
So each cache folder holds a sidecar, :data:`SIDECAR`, written after a compile from the ONNX:

- the SHA-256 of every file OpenVINO wrote there (checked before the blob is loaded; a mismatch,
  a missing or an unlisted file wipes the folder, and the model is compiled again);
- the model's feature for a fixed input (:func:`probe_input`), checked after every load by
  cosine similarity (at least :data:`MIN_COSINE`); a mismatch wipes the cache and recompiles
  once; a model whose fresh compile still disagrees, or gives degenerate features, is an error.

Degenerate features - NaN/inf, all zero, or constant across the feature's dimensions - are
refused here and by the predictor (:func:`degenerate_reason`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from facefeat.errors import WeightsError
from facefeat.io.files import file_sha256
from facefeat.utils import atomic_write_json, dir_lock

log = logging.getLogger("facefeat")

SIDECAR = "facefeat-cache.json"
#: a cached blob's feature for the probe input must be at least this similar to the recorded one
MIN_COSINE = 0.99
PROBE_SEED = 20


def degenerate_reason(feats: np.ndarray) -> str | None:
    """Why ``[N, D]`` raw features cannot come from a working model, or None: NaN/inf values,
    an all-zero row, or a row whose values are all equal."""
    feats = np.asarray(feats)
    if not np.isfinite(feats).all():
        return "NaN/inf features"
    if feats.size == 0:
        return None
    flat = feats.reshape(len(feats), -1)
    if not np.any(flat, axis=1).all():
        return "all-zero features"
    if flat.shape[1] > 1 and (np.ptp(flat, axis=1) == 0).any():
        return "constant features (every dimension equal)"
    return None


def probe_input(shape: tuple[int, ...]) -> np.ndarray:
    """The fixed ``[1, C, H, W]`` input whose feature is recorded (seeded noise in -1..1)."""
    return np.random.default_rng(PROBE_SEED).uniform(-1.0, 1.0, size=(1, *shape[1:])).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else 0.0


def _cache_files(folder: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != SIDECAR and not p.name.startswith(".")}


def _read_sidecar(folder: Path) -> dict | None:
    try:
        doc = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def wipe(folder: Path, why: str) -> None:
    """Remove a cache folder's contents (the blob and the sidecar), saying why in the log."""
    log.warning("OpenVINO model cache %s: %s; it is discarded and the model compiled again", folder, why)
    for p in folder.iterdir() if folder.is_dir() else ():
        if p.name.startswith("."):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def verified_compile(folder: Path, compile_fn: Callable[[], object], probe_fn: Callable[[object], np.ndarray],
                     what: str) -> object:
    """Compile (OpenVINO reads the cache in ``folder``), verifying the cache as the module doc says.

    ``compile_fn()`` returns the compiled model; ``probe_fn(compiled)`` its raw features for
    :func:`probe_input`. Returns the compiled model, or raises WeightsError.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with dir_lock(folder, timeout=600):
        side = _read_sidecar(folder)
        files = _cache_files(folder)
        if files and side is None:
            wipe(folder, "no checksum sidecar (written by another program, or a crash before it)")
        elif side is not None and files != side["files"]:
            wipe(folder, "its files do not match their recorded checksums (damaged)")
            side = None
        from_cache = bool(side)
        for attempt in (1, 2):
            try:
                compiled = compile_fn()
            except RuntimeError as exc:
                if not from_cache:
                    raise
                wipe(folder, f"OpenVINO cannot load it ({str(exc).strip()[:200]})")
                side, from_cache = None, False
                continue
            feats = np.asarray(probe_fn(compiled), np.float32)
            reason = degenerate_reason(feats)
            ref = side.get("reference") if side else None
            if reason is None and ref is not None and _cosine(feats, np.asarray(ref, np.float32)) < MIN_COSINE:
                reason = f"features differ from the recorded reference (cosine {_cosine(feats, np.asarray(ref)):.4f})"
            if reason is None:
                if not from_cache or ref is None:
                    atomic_write_json(folder / SIDECAR, {"files": _cache_files(folder),
                                                         "reference": [round(float(v), 7) for v in feats.ravel()]})
                return compiled
            if not from_cache or attempt == 2:
                raise WeightsError(f"{what}: the compiled model gives {reason} for a fixed test input; the model "
                                   "file is damaged (re-export or re-download it)")
            del compiled
            wipe(folder, f"the model compiled from it gives {reason}")
            side, from_cache = None, False
        raise WeightsError(f"{what}: OpenVINO cannot compile the model from its cache or the ONNX file")
