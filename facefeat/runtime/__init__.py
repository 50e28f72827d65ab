"""The runtime layer: runners (OpenVINO, ONNX Runtime, torch) behind one protocol, device parsing,
preprocessing, the model-directory cache and int8 quantisation.

Names are imported lazily, so ``import facefeat`` stays light (no ONNX Runtime / OpenVINO load).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MODEL_FILE": "model_dir", "META_FILE": "model_dir", "ModelMeta": "model_dir",
    "read_model_dir": "model_dir", "write_model_meta": "model_dir",
    "Preprocess": "preprocess",
    "DeviceSpec": "devices", "parse_device": "devices",
    "cpu_features": "cpu",
    "Runner": "runners", "create_runner": "runners", "resolve_runtime": "runners",
    "OrtRunner": "onnx_runner", "OpenVINORunner": "openvino_runner", "TorchRunner": "torch_runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'facefeat.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"facefeat.runtime.{_EXPORTS[name]}"), name)
