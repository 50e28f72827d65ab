"""A fused model: two models' L2-normalised features, scaled and concatenated, as one OpenVINO graph.

Score fusion of two models with z-normalised cosines, ``s = w (c1 - m1) / s1 + (1 - w) (c2 - m2) / s2``,
is affine in the two cosines: ``s = a1 c1 + a2 c2 + b`` with ``a1 = w / s1``, ``a2 = (1 - w) / s2``.
The feature ``f = [sqrt(k1) u1, sqrt(k2) u2]`` with ``k_i = a_i / (a1 + a2)`` is a unit vector whose
cosine with another is ``k1 c1 + k2 c2 = (s - b) / (a1 + a2)``: an increasing affine function of the
fused score. So ranking, thresholds (calibrated on the fused cosine), galleries, indexes and the
service treat the fused model like any other.

The graph takes one canvas (``face_crop``: each part's crop at its place, see
:mod:`facefeat.vision.crops`), slices each part's input out of it, runs both parts and returns ``f``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from facefeat.errors import DependencyError, InputError, WeightsError, require


def fusion_scales(fusion: Mapping[str, Any]) -> list[float]:
    """``[sqrt(k1), sqrt(k2)]`` of a fusion record ``{"weight": w, "znorm": [[m1, s1], [m2, s2]]}``."""
    w = float(fusion["weight"])
    (_, s1), (_, s2) = fusion["znorm"]
    if not 0.0 <= w <= 1.0 or float(s1) <= 0 or float(s2) <= 0:
        raise InputError(f"fusion: weight must be in [0, 1] and z-norm deviations > 0, got {dict(fusion)!r}")
    a = [w / float(s1), (1.0 - w) / float(s2)]
    return [math.sqrt(x / sum(a)) for x in a]


def fused_cosine(fusion: Mapping[str, Any], c1: Any, c2: Any) -> Any:
    """The fused model's cosine for the parts' cosines ``c1``, ``c2`` (numbers or arrays)."""
    k1, k2 = (x * x for x in fusion_scales(fusion))
    return k1 * c1 + k2 * c2


def fused_score(fusion: Mapping[str, Any], c1: Any, c2: Any) -> Any:
    """The z-norm score fusion ``w (c1 - m1) / s1 + (1 - w) (c2 - m2) / s2`` (the fused cosine is an
    increasing affine function of it)."""
    w = float(fusion["weight"])
    (m1, s1), (m2, s2) = fusion["znorm"]
    return w * (c1 - m1) / s1 + (1.0 - w) * (c2 - m2) / s2


def compose(parts: Sequence[str | os.PathLike], regions: Sequence[Mapping[str, Any]], canvas: Sequence[int],
            fusion: Mapping[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/inference.xml`` (+ ``.bin``): the fused graph of the model files ``parts``
    (ONNX or IR, each ``[N, 3, h, w]``), part ``i`` reading ``regions[i]`` of an ``[N, 3, H, W]`` canvas."""
    try:
        ov = require("openvino", "facenet", "building a fused model")
    except DependencyError as exc:
        raise DependencyError(f"{exc} (or: pip install openvino)") from exc
    import openvino.opset13 as ops
    import numpy as np

    if len(parts) != 2 or len(regions) != 2:
        raise InputError(f"a fused model has two parts, got {len(parts)} models and {len(regions)} regions")
    core = ov.Core()
    ch, cw = (int(v) for v in canvas)
    param = ops.parameter(ov.PartialShape([-1, 3, ch, cw]), ov.Type.f32, name="input")
    feats = []
    for path, region, scale in zip(parts, regions, fusion_scales(fusion)):
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise WeightsError(f"{path}: OpenVINO cannot read this part of the fused model ({exc})") from exc
        (y, x), (h, w) = region["at"], region["size"]
        part_in = ops.slice(param, np.array([y, x], np.int64), np.array([y + h, x + w], np.int64),
                            np.array([1, 1], np.int64), np.array([2, 3], np.int64))
        (p,) = model.get_parameters()
        for target in list(p.output(0).get_target_inputs()):
            target.replace_source_output(part_in.output(0))
        out = model.get_results()[0].input_value(0)
        flat = ops.reshape(out, np.array([0, -1], np.int64), special_zero=True)
        unit = ops.normalize_l2(flat, np.array([1], np.int64), 1e-12, "max")
        feats.append(ops.multiply(unit, np.array(scale, np.float32)))
    result = ops.result(ops.concat(feats, 1))
    fused = ov.Model([result], [param], "fused")
    fused.outputs[0].get_tensor().set_names({"embeddings"})
    dst = Path(out_dir) / "inference.xml"
    ov.save_model(fused, str(dst), compress_to_fp16=False)
    return dst


__all__ = ["compose", "fused_cosine", "fused_score", "fusion_scales"]
