"""ONNX Runtime session wrapper: one preprocessed NCHW float32 batch in, raw features out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort


def default_threads() -> int:
    env = os.environ.get("FACEFEAT_NUM_THREADS")
    return int(env) if env else (os.cpu_count() or 1)


class OrtRunner:
    """Runs an ONNX model with a dynamic batch axis on ONNX Runtime (``run`` is thread-safe)."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, num_threads: int | None = None, device: str = "cpu",
                 cpu_rewrites: bool = True):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = num_threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CPUExecutionProvider"]
        if device.startswith("gpu") or device.startswith("cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                dev_id = int(device.split(":")[1].split(",")[0]) if ":" in device else 0
                providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        self.path = Path(onnx_path)
        model: str | bytes = str(onnx_path)
        if cpu_rewrites and providers == ["CPUExecutionProvider"]:
            from facefeat.runtime.graph_opt import optimized_model_bytes

            model = optimized_model_bytes(onnx_path) or model
        self.session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        return out.reshape(out.shape[0], -1)
