"""Post-training int8 quantisation with NNCF, calibrated on aligned faces (``facefeat[quantize]``).

The fp32 ``inference.onnx`` of a zoo model (or of an exported model directory) becomes a QDQ
int8 ONNX in a normal model directory (``precision: int8`` in ``inference.yml``), which
``create_model(model_dir=...)`` runs on OpenVINO (int8 kernels) or ONNX Runtime.

Calibration images: a directory of images (searched recursively) or a PaddleX-format dataset
(``train/label.txt``). Images already of the model's input size are taken as aligned faces; others
are detected (YuNet) and aligned onto the ArcFace template; images without a face are skipped.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import InputError, require
from facefeat.io import IMAGE_EXTENSIONS, read_image
from facefeat.registry import get_spec
from facefeat.runtime.model_dir import MODEL_FILE, ModelMeta, onnx_sha256, read_model_dir, write_model_meta
from facefeat.runtime.preprocess import Preprocess
from facefeat.utils import atomic_dir

log = logging.getLogger("facefeat")

MIN_CALIBRATION_FACES = 8


def calibration_paths(calib: str | os.PathLike, limit: int) -> list[Path]:
    """Up to ``limit`` image paths of ``calib``, spread evenly over its sorted files."""
    root = Path(calib)
    if not root.is_dir():
        raise InputError(f"calibration set {str(calib)!r} is not a directory (give a folder of face images "
                         "or a PaddleX dataset with train/label.txt)")
    label = root / "train" / "label.txt"
    if label.is_file():
        paths = [root / line.split()[0] for line in label.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise InputError(f"calibration set {str(calib)!r} holds no images")
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def calibration_faces(paths: list[Path], pp: Preprocess) -> tuple[list[np.ndarray], list[str]]:
    """Aligned BGR faces of ``paths`` and the names of images skipped (unreadable, no face)."""
    from facefeat.vision.photo import PhotoAligner

    aligner, faces, skipped = PhotoAligner(pp.input_size), [], []
    for p in paths:
        try:
            img = read_image(str(p))
        except InputError as exc:
            skipped.append(f"{p}: {exc}")
            continue
        face = aligner.face(img)  # aligned crops pass as they are; photos get their subject aligned
        if face is None:
            skipped.append(f"{p}: no face found")
            continue
        faces.append(face)
    return faces, skipped


def quantize_model(model_name: str | None = None, weights: str | os.PathLike | None = None, *,
                   model_dir: str | os.PathLike | None = None, calib: str | os.PathLike,
                   out_dir: str | os.PathLike, max_images: int = 300) -> dict[str, Any]:
    """Quantise a zoo model (or an fp32 model directory) to int8; returns a report dict."""
    nncf = require("nncf", "quantize", "int8 quantisation")
    import onnx

    t0 = time.perf_counter()
    if model_dir is None:
        from facefeat.runtime.zoo import zoo_model_dir
        from facefeat.weights.resolver import resolve

        spec = get_spec(model_name or "SFace")
        model_dir, src_onnx, src = zoo_model_dir(spec, resolve(weights, spec, where="--weights"))
    else:
        src_onnx, src = read_model_dir(model_dir)
    if src.precision != "fp32":
        raise InputError(f"model_dir {str(model_dir)!r} is already {src.precision}; quantise its fp32 model")
    faces, skipped = calibration_faces(calibration_paths(calib, int(max_images)), src.preprocess)
    if len(faces) < MIN_CALIBRATION_FACES:
        raise InputError(f"calibration set {str(calib)!r}: only {len(faces)} usable faces "
                         f"(need >= {MIN_CALIBRATION_FACES}); skipped: {skipped[:5]}")
    x = src.preprocess(faces)
    model = onnx.load(str(src_onnx))
    input_name = model.graph.input[0].name
    data = nncf.Dataset([x[i:i + 1] for i in range(len(x))], lambda a: {input_name: a})
    from facefeat.runtime.sigstack import keep_sigaltstack

    with keep_sigaltstack():  # NNCF compiles with OpenVINO: see facefeat.runtime.sigstack
        qmodel = nncf.quantize(model, data, subset_size=len(x))
    meta = ModelMeta(model_name=src.model_name, embedding_size=src.embedding_size, preprocess=src.preprocess,
                     precision="int8",
                     extra={**src.extra, "quantized_from_sha256": onnx_sha256(src_onnx)[:16],
                            "calibration_images": len(faces), "quantizer": f"nncf {nncf.__version__}"})
    with atomic_dir(out_dir) as tmp:
        onnx.save(qmodel, str(tmp / MODEL_FILE))
        write_model_meta(tmp, meta)
    return {"model_name": src.model_name, "out_dir": str(out_dir), "source": str(model_dir),
            "calibration_images": len(faces), "skipped": len(skipped), "seconds": round(time.perf_counter() - t0, 1)}
