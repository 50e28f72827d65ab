"""ONNX Runtime session wrapper: one preprocessed NCHW float32 batch in, raw features out.

The portable runner: every platform ONNX Runtime has wheels for, fp32 or int8 (a quantised model
directory), and CUDA through the CUDA execution provider (``onnxruntime-gpu``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facefeat.errors import DependencyError, WeightsError
from facefeat.runtime.devices import DeviceSpec, parse_device
from facefeat.runtime.graph_opt import optimized_model_bytes

#: CPU convolution nets here run fastest per image on chunks of 1-2 images (measured on MobileFaceNet
#: and SFace: at 32 the activations fall out of cache and each image costs ~20-50% more)
DEFAULT_MICRO_BATCH = 2
CUDA_PROVIDER = "CUDAExecutionProvider"


def default_threads() -> int:
    env = os.environ.get("FACEFEAT_NUM_THREADS")
    return int(env) if env else (os.cpu_count() or 1)


def cuda_providers(device: DeviceSpec) -> list:
    """ONNX Runtime providers for a CUDA device, or a DependencyError that says what to install."""
    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise DependencyError(
            f"device {str(device)!r} needs ONNX Runtime's CUDA execution provider, which this onnxruntime "
            f"build lacks (it has: {', '.join(available)}); install it with: pip uninstall -y onnxruntime "
            "&& pip install 'facefeat[gpu]' (onnxruntime-gpu, matching your CUDA), or use device='cpu'"
        )
    return [(CUDA_PROVIDER, {"device_id": device.index}), "CPUExecutionProvider"]


class OrtRunner:
    """Runs an ONNX model with a dynamic batch axis on ONNX Runtime (``run`` is thread-safe)."""

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, num_threads: int | None = None, device: "str | DeviceSpec" = "cpu",
                 cpu_rewrites: bool = True, micro_batch: int | None = None, precision: str = "fp32"):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = num_threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.device = parse_device(device)
        self.precision = precision
        self.num_threads = opts.intra_op_num_threads
        providers = cuda_providers(self.device) if self.device.kind == "gpu" else ["CPUExecutionProvider"]
        self.path = Path(onnx_path)
        model: str | bytes = str(onnx_path)
        try:
            if cpu_rewrites and self.device.kind == "cpu":
                model = optimized_model_bytes(onnx_path) or model
            self.session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        except Exception as exc:  # protobuf DecodeError, ORT's InvalidProtobuf/Fail, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(f"{self.path}: ONNX Runtime cannot load this model ({first[:300]})") from exc
        self.on_cpu = self.device.kind == "cpu"
        #: on CPU a batch runs in chunks this big: small chunks keep activations in cache
        self.micro_batch = int(micro_batch or os.environ.get("FACEFEAT_MICRO_BATCH", DEFAULT_MICRO_BATCH))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        return out.reshape(out.shape[0], -1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        mb = self.micro_batch if self.on_cpu else len(batch)
        if len(batch) <= mb:
            return self._run(batch)
        return np.concatenate([self._run(batch[i:i + mb]) for i in range(0, len(batch), mb)])
