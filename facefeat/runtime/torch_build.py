"""Build torch models from the registry and weights, and export them to ONNX (needs torch)."""

from __future__ import annotations

import importlib
from pathlib import Path

from facefeat.errors import require
from facefeat.registry import ModelSpec
from facefeat.runtime.model_dir import MODEL_FILE, ModelMeta, write_model_meta
from facefeat.utils import atomic_dir
from facefeat.weights.loaders import load_into
from facefeat.weights.ref import WeightsRef

ONNX_OPSET = 17


def _torch():
    return require("torch", "train", "building a PyTorch model (MobileFaceNet/ResNet50_face, training, export)")


def arch_class(spec: ModelSpec):
    module, _, cls = spec.arch.partition(":")
    return getattr(importlib.import_module(module), cls)


def build_torch_model(spec: ModelSpec, weights: WeightsRef | None = None):
    """Instantiate ``spec``'s architecture and load the resolved ``weights`` into it (``None``:
    random init), in eval mode."""
    _torch()
    model = arch_class(spec)(embedding_size=spec.embedding_size)
    if weights is not None:
        load_into(model, spec, weights)
    return model.eval()


def export_onnx(model, meta: ModelMeta, out_dir: str | Path, opset: int = ONNX_OPSET) -> Path:
    """Export ``model`` to ``out_dir/inference.onnx`` (dynamic batch) + ``inference.yml``, atomically."""
    torch = _torch()
    h, w = meta.input_size
    model = model.eval()
    dummy = torch.zeros(2, 3, h, w)
    with atomic_dir(out_dir) as tmp:
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp / MODEL_FILE),
            input_names=["x"],
            output_names=["feature"],
            dynamic_axes={"x": {0: "batch"}, "feature": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        write_model_meta(tmp, meta)
    return Path(out_dir)
