"""Export a model to an inference directory: ``inference.onnx`` (dynamic batch) + ``inference.yml``.

    facefeat -c configs/MobileFaceNet.yaml -o Global.mode=export -o Export.weight_path=output/best_model/model.pt

``Export.weight_path``: a facefeat ``.pt`` checkpoint (or a folder holding ``model.pt``), a
PaddleX ``.pdparams``, an SFace ``.onnx``, or a zoo model name (its default weights). The model is
built in PyTorch, exported with :func:`facefeat.runtime.torch_build.export_onnx` into
``<Global.output>/inference`` and checked: ONNX Runtime and PyTorch must agree on a random batch
(the maximum absolute difference is reported in ``export_result.json``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from facefeat.config import as_config
from facefeat.errors import WeightsError
from facefeat.predict.predictor import preprocess_images
from facefeat.registry import ModelSpec, get_spec
from facefeat.runtime.model_dir import MODEL_FILE, ModelMeta
from facefeat.runtime.onnx_runner import OrtRunner
from facefeat.runtime.torch_build import build_torch_model, export_onnx
from facefeat.utils import atomic_write_json
from facefeat.weights import resolver
from facefeat.weights.ref import WeightsRef

__all__ = ["export_model", "resolve_export_weights", "run_export", "verify_onnx"]

RESULT_NAME = "export_result.json"
#: tolerance of the ONNX Runtime vs PyTorch check (max abs difference of raw features)
VERIFY_ATOL = 1e-4


def resolve_export_weights(spec: ModelSpec, weight_path: str | os.PathLike | None) -> tuple[ModelSpec, WeightsRef]:
    """``(spec, weights)`` for ``Export.weight_path``; a checkpoint or zoo name names its own model."""
    ref = resolver.resolve(weight_path, spec, where="Export.weight_path")
    if ref.is_dir:
        raise WeightsError(f"Export.weight_path {ref.given!r} is an exported model directory already; "
                           "export takes weights (model.pt, .pdparams, .onnx or a zoo name)")
    return (get_spec(ref.model_name) if ref.model_name else spec), ref


def _random_batch(spec: ModelSpec, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    return preprocess_images(spec, list(rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)))


def verify_onnx(model, onnx_path: str | os.PathLike, spec: ModelSpec, batch_sizes=(1, 7), seed: int = 0) -> dict:
    """ONNX Runtime vs PyTorch on random images: ``max_abs_diff`` of the raw outputs over
    ``batch_sizes``, the outputs' ``max_abs_output``, and ``ok`` (diff <= 1e-4 x max(1, output))."""
    import torch

    runner = OrtRunner(onnx_path)
    worst, scale = 0.0, 0.0
    model = model.eval()
    for i, n in enumerate(batch_sizes):
        x = _random_batch(spec, n, seed + i)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).float().numpy()
        worst = max(worst, float(np.max(np.abs(runner(x) - ref))))
        scale = max(scale, float(np.max(np.abs(ref))))
    return {"max_abs_diff": worst, "max_abs_output": scale, "ok": worst <= VERIFY_ATOL * max(1.0, scale)}


def export_model(model_name: str, weight_path: str | os.PathLike | None, out_dir: str | os.PathLike,
                 opset: int = 17, verify: bool = True) -> dict:
    """Build ``model_name`` with ``weight_path`` in PyTorch and export it to ``out_dir``."""
    t0 = time.perf_counter()
    spec, ref = resolve_export_weights(get_spec(model_name), weight_path)
    path, fmt = ref.path, ref.format
    model = build_torch_model(spec, ref)
    calibrated = ref.calibration(spec)  # the zoo's record, for its default weights only
    meta = ModelMeta.from_spec(spec, weights_file=path.name, weights_format=fmt, source="facefeat export",
                               **({"thresholds": calibrated} if calibrated else {}))
    out = export_onnx(model, meta, out_dir, opset=int(opset))
    res: dict[str, Any] = {
        "done_flag": True,
        "model_name": spec.name,
        "embedding_size": int(spec.embedding_size),
        "weight_path": str(path),
        "weights_format": fmt,
        "inference_dir": str(out),
        "onnx": str(Path(out) / MODEL_FILE),
        "opset": int(opset),
        "preprocess": spec.preprocess_dict(),
    }
    if verify:
        v = verify_onnx(model, Path(out) / MODEL_FILE, spec)
        res["verify_max_abs_diff"] = v["max_abs_diff"]
        res["verify_ok"] = bool(v["ok"])
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def run_export(cfg: Mapping, quiet: bool = False) -> dict:
    """``Global.mode=export``: write ``<Global.output>/inference`` and ``export_result.json``."""
    cfg = as_config(cfg)
    out_dir = Path(cfg.Global.output)
    res = export_model(cfg.Global.model, cfg.Export.weight_path, out_dir / "inference", opset=cfg.Export.opset)
    atomic_write_json(out_dir / RESULT_NAME, res)
    if not quiet:
        extra = f" (ONNX Runtime vs PyTorch max abs diff {res['verify_max_abs_diff']:.2e})" if "verify_max_abs_diff" in res else ""
        print(f"exported {res['model_name']} from {res['weight_path']} to {res['inference_dir']}{extra}")
    return res
