"""Bring your own model: ``facefeat import-model model.onnx --out DIR`` -> a normal model directory.

An ONNX face-embedding network (InsightFace packs, AuraFace, AdaFace, EdgeFace exports, ...) is
checked and written as ``inference.onnx`` + ``inference.yml``, so ``create_model(model_dir=DIR)``,
pipelines, galleries, ``facefeat evaluate`` (which writes calibrated thresholds into DIR) and the
service use it like a zoo model.

* **Input size and layout** come from the graph: ``[N, 3, H, W]`` is kept; ``[N, H, W, 3]`` gets a
  transpose in front so every facefeat runner feeds NCHW. The batch axis is made dynamic and
  checked with a batch of two.
* **Colour order and normalisation** come from ``preset`` (:data:`PRESETS`), or, without one, from
  a check on test faces (``check``: a folder of face photos, or aligned 112x112 crops): each candidate
  of :data:`CANDIDATES` embeds them, and the one whose similarities agree best (Spearman) with
  SFace's on the same faces wins. SFace is the zoo's offline reference, so a model trained with any
  usual normalisation ranks pairs of faces like it only when it is fed the way it was trained.
* **Degenerate features** (NaN, zero, one vector for every face) are refused.
* The weights' **licence** is recorded (``license``), with the source file's SHA-256.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.errors import InputError, WeightsError
from facefeat.runtime.preprocess import Preprocess
from facefeat.utils import atomic_dir

#: preset -> (channel order, mean, std) on 0..255 pixels
PRESETS: dict[str, tuple[str, float, float]] = {
    "insightface": ("RGB", 127.5, 127.5),  # buffalo_l/antelopev2 w600k_r50 etc. (blobFromImage swapRB)
    "arcface": ("RGB", 127.5, 127.5),
    "auraface": ("RGB", 127.5, 127.5),
    "edgeface": ("RGB", 127.5, 127.5),
    "adaface": ("BGR", 127.5, 127.5),  # AdaFace's own code feeds BGR ((x / 255) - 0.5) / 0.5
    "facenet": ("RGB", 127.5, 128.0),
    "raw": ("RGB", 0.0, 1.0),  # the network normalises itself (as SFace does)
}
#: what the check on test faces tries when no preset is given
CANDIDATES: list[tuple[str, float, float]] = [(c, m, s) for c in ("RGB", "BGR")
                                             for m, s in ((127.5, 127.5), (127.5, 128.0), (0.0, 255.0), (0.0, 1.0))]
MIN_CHECK_FACES = 4
DEGENERATE_COSINE = 0.98  # mean cosine between different faces above this: one vector for everything


def _onnx():
    import onnx  # a core dependency

    return onnx


def _layout(model: Any, path: Path) -> tuple[str, int, int, str]:
    """``(layout, height, width, input name)`` of the one image input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"{path}: a face model has one image input; this one has {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)})")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}; expected 4 dimensions (N, C, H, W)")
    if dims[1] == 3 and dims[2] and dims[3]:
        return "NCHW", int(dims[2]), int(dims[3]), inputs[0].name
    if dims[3] == 3 and dims[1] and dims[2]:
        return "NHWC", int(dims[1]), int(dims[2]), inputs[0].name
    raise InputError(f"{path}: input {inputs[0].name!r} has shape {dims}: neither [N, 3, H, W] nor [N, H, W, 3] "
                     "with a fixed height and width")


def _nchw(model: Any, layout: str, name: str) -> Any:
    """The model with a dynamic batch and, for NHWC, a transpose in front of the input."""
    onnx = _onnx()
    from onnx import helper

    inp = next(i for i in model.graph.input if i.name == name)
    dims = inp.type.tensor_type.shape.dim
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "N"
    for out in model.graph.output:
        if len(out.type.tensor_type.shape.dim):
            out.type.tensor_type.shape.dim[0].ClearField("dim_value")
            out.type.tensor_type.shape.dim[0].dim_param = "N"
    if layout == "NHWC":
        h, w = dims[1].dim_value, dims[2].dim_value
        new = helper.make_tensor_value_info("input_nchw", onnx.TensorProto.FLOAT, ["N", 3, h, w])
        node = helper.make_node("Transpose", ["input_nchw"], [name], perm=[0, 2, 3, 1], name="facefeat_nhwc")
        model.graph.node.insert(0, node)
        model.graph.input.remove(inp)
        model.graph.input.insert(0, new)
    del model.graph.value_info[:]
    return model


def _check_faces(check: str | os.PathLike, size: tuple[int, int]) -> list[np.ndarray]:
    """ArcFace-aligned 112x112 faces of ``check`` (a folder of photos, or of aligned crops)."""
    from facefeat.io import IMAGE_EXTENSIONS, read_image
    from facefeat.vision.align import align
    from facefeat.vision.choice import choose_face
    from facefeat.vision.detector import YuNetDetector

    root = Path(check)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if root.is_dir() else []
    if not files:
        raise InputError(f"check {str(check)!r}: not a folder of face images")
    det, faces = YuNetDetector(), []
    for p in files[:64]:
        img = read_image(str(p))
        if img.shape[:2] == (112, 112):
            faces.append(img)
            continue
        d = choose_face(det.detect(img), img.shape[1], img.shape[0])
        if d is not None and not d.too_small:
            faces.append(align(img, d))
    if len(faces) < MIN_CHECK_FACES:
        raise InputError(f"check {str(check)!r}: {len(faces)} usable face(s); give at least {MIN_CHECK_FACES} "
                         "photos of faces (several people)")
    return faces


def _features(onnx_path: Path, pp: Preprocess, faces: Sequence[np.ndarray]) -> np.ndarray:
    from facefeat.runtime.onnx_runner import OrtRunner

    x = OrtRunner(onnx_path, num_threads=1)(pp(faces))
    return np.asarray(x, np.float64).reshape(len(faces), -1)


def degenerate(feats: np.ndarray) -> str | None:
    """Why these features (of different faces) are useless, or None."""
    if not np.isfinite(feats).all():
        return "NaN or infinite features"
    norms = np.linalg.norm(feats, axis=1)
    if feats.shape[1] < 2 or (norms < 1e-6).any():
        return f"zero features (dimension {feats.shape[1]})"
    u = feats / norms[:, None]
    off = (u @ u.T)[~np.eye(len(u), dtype=bool)]
    if off.size and off.mean() > DEGENERATE_COSINE:
        return f"the same feature for every face (mean cosine {off.mean():.3f} between different faces)"
    return None


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def import_model(src: str | os.PathLike, out: str | os.PathLike, preset: str | None = None,
                 check: str | os.PathLike | None = None, name: str | None = None,
                 license: str | None = None) -> dict:
    """Write ``out`` (a model directory) for the ONNX file ``src``; returns what was decided."""
    onnx = _onnx()
    from facefeat.runtime.model_dir import MODEL_FILE, ModelMeta, write_model_meta
    from facefeat.weights.sources import file_sha256

    path = Path(src)
    if not path.is_file():
        raise InputError(f"import-model: {str(src)!r} is not a file")
    if preset is not None and preset.lower() not in PRESETS:
        raise InputError(f"import-model: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if preset is None and check is None:
        raise InputError("import-model: give --preset (" + ", ".join(PRESETS) + ") or --check DIR (a folder of "
                         "face photos: the colour order and normalisation are then found by a check on them)")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable ONNX model ({str(exc)[:200]})") from exc
    layout, h, w, in_name = _layout(model, path)
    model = _nchw(model, layout, in_name)
    name = name or path.stem
    report: dict[str, Any] = {"model_name": name, "source": path.name, "layout": layout, "input_size": [h, w]}
    with atomic_dir(Path(out)) as tmp:
        onnx.save(model, str(tmp / MODEL_FILE))
        faces = _check_faces(check, (h, w)) if check is not None else None
        if preset is not None:
            order, mean, std = PRESETS[preset.lower()]
            report["preset"] = preset.lower()
        else:
            from facefeat import create_model

            ref = create_model("SFace", num_threads=1, precision="fp32").embed(faces)
            iu = np.triu_indices(len(faces), 1)
            ref_s = (ref @ ref.T)[iu]
            scores = {}
            for cand in CANDIDATES:
                pp = Preprocess((h, w), cand[0], (cand[1],) * 3, (cand[2],) * 3)
                f = _features(tmp / MODEL_FILE, pp, faces)
                if degenerate(f):
                    continue
                u = f / np.linalg.norm(f, axis=1, keepdims=True)
                scores[cand] = _spearman((u @ u.T)[iu], ref_s)
            if not scores:
                raise WeightsError(f"{path}: every normalisation gives degenerate features; not a face model?")
            order, mean, std = max(scores, key=scores.get)
            report["check"] = {"faces": len(faces), "agreement_with_SFace": round(scores[(order, mean, std)], 3),
                               "runner_up": round(sorted(scores.values())[-2], 3) if len(scores) > 1 else None}
        pp = Preprocess((h, w), order, (mean,) * 3, (std,) * 3)
        if faces is None:  # no photos: smooth random images still must not all give one vector
            import cv2

            rng = np.random.default_rng(0)
            faces = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3) for _ in range(8)]
        try:
            feats = _features(tmp / MODEL_FILE, pp, faces[:2] + faces[:1])
        except WeightsError as exc:
            raise WeightsError(f"{path}: the model does not run with a batch of several images ({exc})") from exc
        feats = _features(tmp / MODEL_FILE, pp, faces)
        why = degenerate(feats)
        if why:
            raise WeightsError(f"{path}: refused: {why}; check the preset (colour order, normalisation) or the model")
        meta = ModelMeta(model_name=name, embedding_size=int(feats.shape[1]), preprocess=pp,
                         extra={"imported_from": path.name, "source_sha256": file_sha256(path)[:16],
                                "license": license or "not given (record it with --license)",
                                "import": {k: v for k, v in report.items() if k != "model_name"}})
        write_model_meta(tmp, meta)
    report.update(channel_order=order, mean=mean, std=std, embedding_size=int(feats.shape[1]),
                  license=meta.extra["license"], out=str(out))
    return report


__all__ = ["CANDIDATES", "PRESETS", "degenerate", "import_model"]
