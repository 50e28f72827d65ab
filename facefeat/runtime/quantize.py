"""Post-training int8 quantisation with NNCF (``facefeat[quantize]``): the runtime half.

The fp32 model of a zoo model (or of an fp32 model directory) becomes an int8 model directory
(``precision: int8`` in ``inference.yml``) that ``create_model(model_dir=...)`` runs:
* an ONNX model (``inference.onnx``) becomes a QDQ int8 ONNX (OpenVINO int8 kernels, or ONNX Runtime);
* an OpenVINO IR model (``inference.xml``: FaceNet converted from TensorFlow, the fused
  SFace+FaceNet) is quantised as an ``ov.Model`` (``nncf.quantize`` on OpenVINO) and stays IR.

This module holds the calibration-image reader and the quantiser; the public entry point that
picks the calibration faces (a folder of photos, or a gallery's own crops) and checks the result
is :func:`facefeat.engine.quantize.quantize_model`.

Calibration images: a directory of images (searched recursively) or a PaddleX-format dataset
(``train/label.txt``). Images already of the model's input size are taken as aligned faces; others
are detected (YuNet) and aligned onto the ArcFace template (or cut as the model's own ``face_crop``
says, for FaceNet and the fused model); images without a face are skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.errors import InputError, require
from facefeat.io import IMAGE_EXTENSIONS, read_image
from facefeat.registry import get_spec
from facefeat.runtime.model_dir import IR_FILE, MODEL_FILE, ModelMeta, onnx_sha256, read_model_dir, write_model_meta
from facefeat.runtime.preprocess import Preprocess
from facefeat.runtime.sigstack import keep_sigaltstack
from facefeat.runtime.zoo import zoo_model_dir
from facefeat.vision.crops import model_crop
from facefeat.vision.detector import central_face
from facefeat.vision.photo import PhotoAligner
from facefeat.weights.resolver import resolve

log = logging.getLogger("facefeat")

MIN_CALIBRATION_FACES = 8
#: what an int8 directory must not inherit from its fp32 source (it identifies other weights)
_NOT_INHERITED = ("weights_sha256_16", "weights_file")


def source_model(model_name: str | None = None, weights: str | os.PathLike | None = None,
                 model_dir: str | os.PathLike | None = None) -> tuple[Path, Path, ModelMeta]:
    """``(model dir, model file, meta)`` of the fp32 model to quantise: a zoo model (+ weights) or
    an fp32 model directory."""
    if model_dir is None:
        spec = get_spec(model_name or "SFace")
        mdir, src_file, src = zoo_model_dir(spec, resolve(weights, spec, where="--weights"))
    else:
        mdir = Path(model_dir)
        src_file, src = read_model_dir(mdir)
    if src.precision != "fp32":
        raise InputError(f"model_dir {str(mdir)!r} is already {src.precision}; quantise its fp32 model")
    return Path(mdir), Path(src_file), src


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


def calibration_faces(paths: list[Path], pp: Preprocess,
                      face_crop: Mapping[str, Any] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The model's input faces of ``paths`` and the names of images skipped (unreadable, no face).
    ``face_crop``: the model's own crop (:mod:`facefeat.vision.crops`) instead of the 5-point alignment."""

    size = tuple(int(v) for v in face_crop["size"]) if face_crop else pp.input_size
    aligner, faces, skipped = PhotoAligner(size), [], []
    for p in paths:
        try:
            img = read_image(str(p))
        except InputError as exc:
            skipped.append(f"{p}: {exc}")
            continue
        if face_crop and not aligner.is_aligned(img):
            det = central_face(aligner.detector.detect(img), img.shape[1], img.shape[0])
            face = None if det is None else model_crop(img, det, face_crop)
        else:
            face = aligner.face(img)  # aligned crops pass as they are; photos get their subject aligned
        if face is None:
            skipped.append(f"{p}: no face found")
            continue
        faces.append(face)
    return faces, skipped


def quantize_faces(src_file: str | os.PathLike, src: ModelMeta, faces: Sequence[np.ndarray],
                   out_dir: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
    """Quantise the fp32 model file ``src_file`` (ONNX or OpenVINO IR) calibrated on ``faces`` (the
    model's input images, BGR) and write the int8 model directory ``out_dir`` (not atomically:
    callers write into a temporary folder). ``extra`` is recorded in its ``inference.yml``."""
    nncf = require("nncf", "quantize", "int8 quantisation")

    if len(faces) < MIN_CALIBRATION_FACES:
        raise InputError(f"int8 calibration needs >= {MIN_CALIBRATION_FACES} faces, got {len(faces)}")
    src_file, out = Path(src_file), Path(out_dir)
    x = src.preprocess(list(faces))
    batches = [x[i:i + 1] for i in range(len(x))]
    # NNCF compiles with OpenVINO (see facefeat.runtime.sigstack); its progress bars go to stderr,
    # so that stdout keeps the command's one result (--json)
    with keep_sigaltstack(), contextlib.redirect_stdout(sys.stderr):
        if src_file.suffix == ".xml":
            import openvino as ov

            model = ov.Core().read_model(str(src_file))
            qmodel = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(x))
            ov.save_model(qmodel, str(out / IR_FILE), compress_to_fp16=False)
        else:
            import onnx

            model = onnx.load(str(src_file))
            input_name = model.graph.input[0].name
            qmodel = nncf.quantize(model, nncf.Dataset(batches, lambda a: {input_name: a}), subset_size=len(x))
            onnx.save(qmodel, str(out / MODEL_FILE))
    own = {k: v for k, v in src.extra.items() if k not in _NOT_INHERITED}
    meta = ModelMeta(model_name=src.model_name, embedding_size=src.embedding_size, preprocess=src.preprocess,
                     precision="int8",
                     extra={**own, "quantized_from_sha256": onnx_sha256(src_file)[:16],
                            **({"quantized_from_weights": src.extra["weights_sha256_16"]}
                               if src.extra.get("weights_sha256_16") else {}),
                            "calibration_images": len(faces), "quantizer": f"nncf {nncf.__version__}",
                            **dict(extra or {})})
    write_model_meta(out, meta)
    return out


__all__ = ["MIN_CALIBRATION_FACES", "calibration_faces", "calibration_paths", "quantize_faces", "source_model"]
